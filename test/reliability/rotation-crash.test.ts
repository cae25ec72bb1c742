import { describe, expect, it } from 'vitest';
import { parseKeyring } from '../../apps/api/src/config.ts';
import { MasterKeyring } from '../../apps/api/src/crypto/keyring.ts';
import { seedVersions } from '../bench/seed.ts';
import { type Cluster, call, clusterSuite, type Keys, sleep, startApi, tenantOn, token } from './harness.ts';
import { recordOutcome } from './results.ts';

let cluster: Cluster;
let keys: Keys;
clusterSuite({}, (s) => {
  ({ cluster, keys } = s);
});

async function waitUntil(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await sleep(200);
  }
  return false;
}

describe('crashes in the middle of rotation and re-keying', () => {
  it('scheduled rotations killed at random points: each due secret ends rotated exactly once', async () => {
    let api = await startApi(cluster.ownerUrl, keys, { COFFER_SCHEDULER_ENABLED: 'false' });
    const t = await tenantOn(api, keys);
    const rotation = { intervalDays: 30, generator: { length: 24, charset: 'alphanumeric' } };
    const set: Record<string, { value: string }> = {};
    for (let i = 0; i < 60; i++) set[`DUE_${i}`] = { value: `v-${i}` };
    expect(
      (await call(api.base, 'POST', '/v1/bundles/shared/due', { token: t.adminToken, body: { set } })).status,
    ).toBe(200);
    for (const name of Object.keys(set)) {
      await call(api.base, 'PATCH', `/v1/secrets/shared/due/${name}`, { token: t.adminToken, body: { rotation } });
    }
    await api.stop();
    await cluster.query(
      `update coffer.rotation_schedule set due_at = now() - interval '1 minute' where tenant_id = $1`,
      [t.tenantId],
    );

    let kills = 0;
    for (let round = 0; round < 3; round++) {
      api = await startApi(cluster.ownerUrl, keys, { COFFER_SCHEDULER_INTERVAL_MS: '200' });
      await sleep(150 + Math.floor(Math.random() * 400));
      api.kill('SIGKILL');
      kills++;
      await api.exited;
    }
    api = await startApi(cluster.ownerUrl, keys, { COFFER_SCHEDULER_INTERVAL_MS: '200' });
    const done = await waitUntil(async () => {
      const rows = await cluster.query<{ n: number }>(
        `select count(*)::int as n from coffer.rotation_schedule where tenant_id = $1 and due_at <= now()`,
        [t.tenantId],
      );
      return rows[0]?.n === 0;
    }, 30_000);
    expect(done).toBe(true);
    const rows = await cluster.query<{ name: string; current_version: number; versions: number; rotations: number }>(
      `select s.name, s.current_version,
         (select count(*)::int from coffer.secret_versions v where v.secret_id = s.id) as versions,
         (select count(*)::int from coffer.audit_events e where e.tenant_id = s.tenant_id and e.action = 'secrets.rotate'
            and e.outcome = 'allowed' and e.resource = 'shared/due/' || s.name) as rotations
       from coffer.secrets s where s.tenant_id = $1 and s.owner = 'due'`,
      [t.tenantId],
    );
    expect(rows).toHaveLength(60);
    for (const r of rows) expect(r, r.name).toMatchObject({ current_version: 2, versions: 2, rotations: 1 });
    const adminToken = await token(api.base, t.admin.clientId, t.admin.clientSecret);
    const sample = await call(api.base, 'GET', '/v1/secrets/shared/due/DUE_7?version=previous', { token: adminToken });
    expect(sample.body).toMatchObject({ value: 'v-7', version: 1 });
    await api.stop();
    recordOutcome('crash-during-scheduled-rotation', {
      kills,
      secrets: rows.length,
      rotatedExactlyOnce: rows.length,
      lost: 0,
      doubled: 0,
    });
  });

  it('re-encryption killed mid-way resumes after restart: every version readable, the old key erased', async () => {
    let api = await startApi(cluster.ownerUrl, keys, { COFFER_SCHEDULER_INTERVAL_MS: '200' });
    const t = await tenantOn(api, keys);
    const names = Array.from({ length: 40 }, (_, i) => `R_${i}`);
    for (let v = 0; v < 25; v++) {
      const set = Object.fromEntries(names.map((n) => [n, { value: `${n}-v${v}` }]));
      await call(api.base, 'POST', '/v1/bundles/sandbox/rekey', { token: t.adminToken, body: { set } });
    }
    // Plenty of versions (seeded straight into the database) so the kill lands while the job is still going.
    const keyring = new MasterKeyring(parseKeyring(keys.masterKeys, 'test', []) ?? []);
    await seedVersions(cluster.ownerUrl, keyring, t.tenantId, {
      kind: 'sandbox',
      owner: 'bulk',
      secrets: 2_000,
      versions: 10,
    });
    const rotated = await call(api.base, 'POST', '/v1/keys/rotate', { token: t.adminToken });
    expect(rotated.status).toBe(202);
    await sleep(150 + Math.floor(Math.random() * 200));
    api.kill('SIGKILL');
    await api.exited;
    const midway = await cluster.query<{ n: number }>(
      `select count(*)::int as n from coffer.secret_versions where tenant_id = $1 and dek_version = 1`,
      [t.tenantId],
    );

    api = await startApi(cluster.ownerUrl, keys, { COFFER_SCHEDULER_INTERVAL_MS: '200' });
    const adminToken = await token(api.base, t.admin.clientId, t.admin.clientSecret);
    const retired = await waitUntil(async () => {
      const r = await call(api.base, 'GET', '/v1/keys', { token: adminToken });
      const items = (r.body as { items: { version: number; state: string; ciphertexts: number }[] }).items;
      return items.find((k) => k.version === 1)?.state === 'retired';
    }, 30_000);
    expect(retired).toBe(true);
    expect(midway[0]?.n ?? 0).toBeGreaterThan(0); // the kill really interrupted the work
    const wrapped = await cluster.query<{ len: number }>(
      `select length(wrapped_key)::int as len from coffer.tenant_keys where tenant_id = $1 and version = 1`,
      [t.tenantId],
    );
    expect(wrapped[0]?.len).toBe(0);
    for (const n of names.slice(0, 10)) {
      const r = await call(api.base, 'GET', `/v1/secrets/sandbox/rekey/${n}?version=3`, { token: adminToken });
      expect(r.body).toMatchObject({ value: `${n}-v2` });
    }
    const bulk = await call(api.base, 'GET', '/v1/secrets/sandbox/bulk/BULK_1999?version=7', { token: adminToken });
    expect(bulk.body).toMatchObject({ value: 'value-BULK_1999-7' });
    await api.stop();
    recordOutcome('crash-during-re-encryption', {
      versions: names.length * 25 + 20_000,
      sealedByOldKeyWhenKilled: midway[0]?.n ?? 0,
      resumed: true,
      oldKeyErased: true,
    });
  });
});
