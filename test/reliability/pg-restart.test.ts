import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { type Api, type Cluster, call, clusterSuite, isEnvelope, type Keys, sleep, tenantOn } from './harness.ts';
import { recordOutcome } from './results.ts';

let cluster: Cluster;
let api: Api;
let keys: Keys;
clusterSuite({ apis: [{ COFFER_DB_ACQUIRE_TIMEOUT_MS: '1000', COFFER_DB_STATEMENT_TIMEOUT_MS: '3000' }] }, (s) => {
  ({ cluster, keys } = s);
  [api] = s.apis;
});

describe('PostgreSQL restarts under load', () => {
  it('answers 503 with Retry-After while the database is away, recovers within 5 s, and loses no acknowledged write', async () => {
    const { adminToken } = await tenantOn(api, keys);
    const acked = new Map<string, { value: string; requestId: string }>();
    const outcomes = { ok: 0, unavailable: 0, other: 0, slowest: 0 };
    let stop = false;
    let n = 0;
    const worker = async (w: number) => {
      while (!stop) {
        const name = `K_${w}_${n++}`;
        const value = randomBytes(12).toString('hex');
        const put = await call(api.base, 'PUT', `/v1/secrets/sandbox/restart/${name}`, {
          token: adminToken,
          body: { value },
          timeoutMs: 20_000,
        });
        outcomes.slowest = Math.max(outcomes.slowest, put.ms);
        if (put.status === 200 || put.status === 201) {
          outcomes.ok++;
          acked.set(name, { value, requestId: put.headers.get('x-request-id') ?? '' });
        } else if (put.status === 503) {
          outcomes.unavailable++;
          expect(isEnvelope(put.body)).toBe(true);
          expect(Number(put.headers.get('retry-after'))).toBeGreaterThan(0);
          await sleep(50);
        } else outcomes.other++;
        const read = await call(api.base, 'GET', '/v1/secrets/sandbox/restart/K_0_0', {
          token: adminToken,
          timeoutMs: 20_000,
        });
        outcomes.slowest = Math.max(outcomes.slowest, read.ms);
        if (read.status === 503) expect(isEnvelope(read.body)).toBe(true);
      }
    };
    const workers = Array.from({ length: 4 }, (_, w) => worker(w));
    await sleep(1500);

    await cluster.stop();
    const downAt = Date.now();
    await sleep(500);
    const during = await call(api.base, 'GET', '/readyz');
    expect(during.status).toBe(503);
    expect(JSON.stringify(during.body)).not.toMatch(/127\.0\.0\.1|:\d{4,5}/); // names the check, not the address
    const whileDown = await call(api.base, 'GET', '/v1/secrets/sandbox/restart/K_0_0', { token: adminToken });
    expect(whileDown.status).toBe(503);
    expect(whileDown.ms).toBeLessThan(3000);
    await sleep(2000);

    await cluster.start();
    const upAt = Date.now();
    let readyAfterMs = -1;
    for (;;) {
      const r = await call(api.base, 'GET', '/readyz', { timeoutMs: 2000 });
      if (r.status === 200) {
        readyAfterMs = Date.now() - upAt;
        break;
      }
      if (Date.now() - upAt > 10_000) break;
      await sleep(100);
    }
    await sleep(1500);
    stop = true;
    await Promise.all(workers);

    expect(api.child.exitCode).toBeNull(); // still up
    expect(readyAfterMs).toBeGreaterThanOrEqual(0);
    expect(readyAfterMs).toBeLessThan(5000);
    expect(outcomes.other).toBe(0);
    expect(outcomes.unavailable).toBeGreaterThan(0);
    expect(outcomes.slowest).toBeLessThan(10_000); // nothing hangs past the configured timeouts

    // Every write acknowledged with a 2xx is readable with its value, and has its audit event.
    for (const [name, { value }] of acked) {
      const r = await call(api.base, 'GET', `/v1/secrets/sandbox/restart/${name}`, { token: adminToken });
      expect(r.status, name).toBe(200);
      expect((r.body as { value: string }).value).toBe(value);
    }
    const ids = [...acked.values()].map((a) => a.requestId);
    const rows = await cluster.query<{ request_id: string }>(
      `select request_id from coffer.audit_events where action = 'secrets.write' and outcome = 'allowed' and request_id = any($1)`,
      [ids],
    );
    expect(new Set(rows.map((r) => r.request_id)).size).toBe(ids.length);

    recordOutcome('postgres-restart', {
      acknowledgedWrites: acked.size,
      refusedWith503: outcomes.unavailable,
      otherFailures: outcomes.other,
      downForMs: upAt - downAt,
      readyAfterDatabaseReturnMs: readyAfterMs,
      slowestRequestMs: Math.round(outcomes.slowest),
      writesLost: 0,
    });
  });
});
