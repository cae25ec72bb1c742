import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { type Cluster, call, clusterSuite, type Keys, sleep, startApi, tenantOn, token } from './harness.ts';
import { recordOutcome } from './results.ts';

let cluster: Cluster;
let keys: Keys;
clusterSuite({}, (s) => {
  ({ cluster, keys } = s);
});

describe('the API is killed with SIGKILL in the middle of writes, again and again', () => {
  it('keeps every acknowledged write, leaves no half-written version, and no version without its audit event', async () => {
    let api = await startApi(cluster.ownerUrl, keys);
    const t = await tenantOn(api, keys);
    const acked = new Map<string, { value: string; version: number }>();
    let kills = 0;
    for (let round = 0; round < 5; round++) {
      if (round > 0) api = await startApi(cluster.ownerUrl, keys);
      const adminToken = await token(api.base, t.admin.clientId, t.admin.clientSecret);
      let stop = false;
      const worker = async (w: number) => {
        while (!stop) {
          const name = `S_${w % 3}`; // a few secrets, many versions each: versions race
          const value = randomBytes(10).toString('hex');
          const r = await call(api.base, 'PUT', `/v1/secrets/sandbox/kill9/${name}`, {
            token: adminToken,
            body: { value },
          });
          if (r.status === 200 || r.status === 201) {
            const version = (r.body as { version: number }).version;
            const prev = acked.get(name);
            if (!prev || prev.version < version) acked.set(name, { value, version });
          }
        }
      };
      const workers = Array.from({ length: 6 }, (_, w) => worker(w));
      await sleep(300 + Math.floor(Math.random() * 700));
      api.kill('SIGKILL');
      kills++;
      await api.exited;
      stop = true;
      await Promise.all(workers);
    }

    api = await startApi(cluster.ownerUrl, keys);
    const adminToken = await token(api.base, t.admin.clientId, t.admin.clientSecret);
    // Acknowledged writes: the newest acknowledged version of each secret is there (newer ones may exist: a
    // write can commit after its response was lost with the process).
    for (const [name, { value, version }] of acked) {
      const r = await call(api.base, 'GET', `/v1/secrets/sandbox/kill9/${name}?version=${version}`, {
        token: adminToken,
      });
      expect(r.status, name).toBe(200);
      expect((r.body as { value: string }).value).toBe(value);
    }
    // No half-written version: every secret's current version exists, versions are 1..n without gaps, and each
    // version has exactly one audit event of its write.
    await cluster.query(`select set_config('app.tenant_id', $1, false)`, [t.tenantId]);
    const rows = await cluster.query<{ name: string; current_version: number; versions: number[]; events: number[] }>(
      `select s.name, s.current_version,
         (select array_agg(v.version order by v.version) from coffer.secret_versions v where v.secret_id = s.id) as versions,
         (select array_agg(e.version order by e.version) from coffer.audit_events e
            where e.tenant_id = s.tenant_id and e.action = 'secrets.write' and e.outcome = 'allowed'
              and e.resource = 'sandbox/kill9/' || s.name) as events
       from coffer.secrets s where s.tenant_id = $1 and s.owner = 'kill9'`,
      [t.tenantId],
    );
    let versions = 0;
    for (const r of rows) {
      const expected = Array.from({ length: r.current_version }, (_, i) => i + 1);
      expect(r.versions).toEqual(expected);
      expect(r.events).toEqual(expected);
      versions += r.current_version;
    }
    const verify = await call(api.base, 'GET', '/v1/audit/verify', { token: adminToken });
    expect(verify.body).toMatchObject({ ok: true });
    await api.stop();
    recordOutcome('sigkill-mid-write', {
      kills,
      secrets: rows.length,
      versionsWritten: versions,
      acknowledgedChecked: acked.size,
      writesLost: 0,
      chainVerifies: true,
    });
  });
});
