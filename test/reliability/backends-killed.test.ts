import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { type Api, type Cluster, call, clusterSuite, isEnvelope, type Keys, sleep, tenantOn } from './harness.ts';
import { recordOutcome } from './results.ts';

let cluster: Cluster;
let api: Api;
let keys: Keys;
clusterSuite({ apis: [{}] }, (s) => {
  ({ cluster, keys } = s);
  [api] = s.apis;
});

describe("the API's database connections are killed mid-request", () => {
  it('stays up, answers the failed requests with clean 503s, and the next requests succeed', async () => {
    const { adminToken } = await tenantOn(api, keys);
    await call(api.base, 'PUT', '/v1/secrets/sandbox/kill/READ_ME', { token: adminToken, body: { value: 'v' } });
    const tally = { ok: 0, unavailable: 0, other: 0 };
    let stop = false;
    const worker = async (w: number) => {
      for (let i = 0; !stop; i++) {
        const r =
          i % 2 === 0
            ? await call(api.base, 'PUT', `/v1/secrets/sandbox/kill/W_${w}`, {
                token: adminToken,
                body: { value: randomBytes(8).toString('hex') },
              })
            : await call(api.base, 'GET', '/v1/secrets/sandbox/kill/READ_ME', { token: adminToken });
        if (r.status >= 200 && r.status < 300) tally.ok++;
        else if (r.status === 503 && isEnvelope(r.body)) tally.unavailable++;
        else tally.other++;
      }
    };
    const workers = Array.from({ length: 6 }, (_, w) => worker(w));
    let killed = 0;
    for (let round = 0; round < 8; round++) {
      await sleep(250);
      const rows = await cluster.query<{ n: number }>(
        `select count(pg_terminate_backend(pid))::int as n from pg_stat_activity where usename = 'coffer_app' and pid <> pg_backend_pid()`,
      );
      killed += rows[0]?.n ?? 0;
    }
    await sleep(500);
    stop = true;
    await Promise.all(workers);

    expect(api.child.exitCode).toBeNull();
    expect(killed).toBeGreaterThan(0);
    expect(tally.other).toBe(0);
    const after = await call(api.base, 'GET', '/v1/secrets/sandbox/kill/READ_ME', { token: adminToken });
    expect(after.status).toBe(200);
    expect(api.output()).not.toMatch(/"level":60/); // nothing fatal
    recordOutcome('backends-killed', {
      connectionsKilled: killed,
      requestsOk: tally.ok,
      cleanlyRefused503: tally.unavailable,
      otherFailures: tally.other,
    });
  });
});
