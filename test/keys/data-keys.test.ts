import { Bundle, BundleWriteResponse, DataKeys, RotateDataKeyResponse, SecretWithValue } from '@coffer/contracts';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseKeyring } from '../../apps/api/src/config.ts';
import { MasterKeyring } from '../../apps/api/src/crypto/keyring.ts';
import { TenantKeyCache } from '../../apps/api/src/crypto/tenant-key-cache.ts';
import { dataKeyQueries } from '../../apps/api/src/data-keys/data-keys.queries.ts';
import { auditRowsOf, firstBrokenLink } from '../support/audit.ts';
import { createIdentity, rootToken } from '../support/factories.ts';
import { eventually, type OpsApi, opsApi, secretIdOf } from '../support/ops.ts';
import {
  expectEmpty,
  expectError,
  expectOk,
  ownerClient,
  type Response,
  type SecretsApi,
  secretsApi,
} from '../support/secrets.ts';
import { type TenantCtx, tenantCtx } from '../support/suite.ts';
import { createTestApp, type TestApp } from '../support/test-app.ts';

/**
 * Tenant data-key rotation. Re-encryption is driven by hand (`app.jobs.rekey`); `rekeyAll` also finds other files'
 * tenants with a retiring key, so every assertion names this file's tenants only.
 */

// Many requests per second from one identity: lift the per-identity rate limit for these apps.
const ENV = { COFFER_RATE_LIMIT_PER_SECOND: '1000000' };

let t: TestApp;
let owner: pg.Client;
let root: string;

beforeAll(async () => {
  t = await createTestApp(ENV);
  owner = await ownerClient();
  root = await rootToken(t.app);
});
afterAll(async () => {
  await owner.end();
  await t.close();
});

/** Writes `count` secrets `N_000…` under `sandbox/<owner>` in one bundle, with values `<tag>-<i>`. */
async function seedBundle(api: SecretsApi, ownerName: string, count: number, tag: string): Promise<void> {
  const set: Record<string, { value: string }> = {};
  for (let i = 0; i < count; i++) set[`N_${String(i).padStart(4, '0')}`] = { value: `${tag}-${i}` };
  expectOk(await api.writeBundle('sandbox', ownerName, { set }), 200, BundleWriteResponse);
}

/** dek_version → how many of the tenant's secret versions it seals, from the database. */
async function dekCounts(tid: string): Promise<Record<number, number>> {
  const { rows } = await owner.query<{ v: number; n: number }>(
    'select dek_version as v, count(*)::int as n from coffer.secret_versions where tenant_id = $1 group by 1',
    [tid],
  );
  return Object.fromEntries(rows.map((r) => [r.v, r.n]));
}

async function keyRows(tid: string) {
  const { rows } = await owner.query<{
    version: number;
    state: string;
    master_key_id: string;
    wrapped_len: number;
    retired_at: Date | null;
  }>(
    `select version, state, master_key_id, length(wrapped_key) as wrapped_len, retired_at
     from coffer.tenant_keys where tenant_id = $1 order by version`,
    [tid],
  );
  return rows;
}

const keysOf = async (ops: OpsApi) => expectOk(await ops.keys(), 200, DataKeys);

function masterKeyring(): MasterKeyring {
  const problems: string[] = [];
  const keys = parseKeyring(inject('masterKeys'), 'test', problems);
  if (!keys) throw new Error(problems.join('; '));
  return new MasterKeyring(keys);
}

describe('POST /v1/keys/rotate', () => {
  it('makes a new data key active at once, re-encrypts every version, then erases the old key', async () => {
    const { tid, api, ops } = await tenantCtx(t, root);
    await seedBundle(api, 'app', 20, 'one');
    await seedBundle(api, 'app', 20, 'two');
    await api.put('sandbox/app/DESTROYED', { value: 'd1' });
    await api.put('sandbox/app/DESTROYED', { value: 'd2' });
    expectEmpty(await api.destroy('sandbox/app/DESTROYED', 1));
    const initial = await keysOf(ops);
    expect(initial.activeVersion).toBe(1);
    expect(initial.items).toMatchObject([{ version: 1, state: 'active', retiredAt: null, ciphertexts: 42 }]);

    const rotated = await ops.rotateKey();
    expect(expectOk(rotated, 202, RotateDataKeyResponse)).toEqual({ keyVersion: 2, retiring: [1] });
    // New writes are sealed by the new key at once.
    await api.put('sandbox/app/AFTER', { value: 'written-after' });
    const { rows } = await owner.query<{ dek_version: number }>(
      'select dek_version from coffer.secret_versions where secret_id = $1',
      [await secretIdOf(owner, tid, 'sandbox/app/AFTER')],
    );
    expect(rows).toEqual([{ dek_version: 2 }]);

    await t.app.jobs.rekey.rekey(tid);
    expect(await dekCounts(tid)).toEqual({ 2: 43 });
    const after = await keysOf(ops);
    expect(after.activeVersion).toBe(2);
    expect(after.items).toMatchObject([
      { version: 1, state: 'retired', masterKeyId: null, ciphertexts: 0 },
      { version: 2, state: 'active', retiredAt: null, ciphertexts: 43 },
    ]);
    expect(after.items[0]?.retiredAt).toBeTypeOf('string');
    expect(after.items[1]?.masterKeyId).toBeTypeOf('string');
    // The old key itself is gone from the database.
    expect((await keyRows(tid)).map((r) => [r.version, r.state, r.wrapped_len])).toEqual([
      [1, 'retired', 0],
      [2, 'active', 60],
    ]);

    // Every version still reads with its own value; the destroyed one stays destroyed.
    const bundle = expectOk(await api.bundle('sandbox', 'app'), 200, Bundle);
    for (let i = 0; i < 20; i++) expect(bundle.values[`N_${String(i).padStart(4, '0')}`]).toBe(`two-${i}`);
    expect(expectOk(await api.get('sandbox/app/N_0007', 1), 200, SecretWithValue).value).toBe('one-7');
    expect(expectOk(await api.get('sandbox/app/N_0007', 'previous'), 200, SecretWithValue).value).toBe('one-7');
    expectError(await api.get('sandbox/app/DESTROYED', 1), 410, 'gone');
    expect(expectOk(await api.get('sandbox/app/DESTROYED'), 200, SecretWithValue).value).toBe('d2');

    // A second rotation retires version 2 the same way.
    expect(expectOk(await ops.rotateKey(), 202, RotateDataKeyResponse)).toEqual({ keyVersion: 3, retiring: [2] });
    await t.app.jobs.rekey.rekey(tid);
    expect(await dekCounts(tid)).toEqual({ 3: 43 });
    expect((await keysOf(ops)).items.map((k) => [k.version, k.state, k.ciphertexts])).toEqual([
      [1, 'retired', 0],
      [2, 'retired', 0],
      [3, 'active', 43],
    ]);
    expect(expectOk(await api.get('sandbox/app/N_0019', 1), 200, SecretWithValue).value).toBe('one-19');

    // Audited: each rotation by the admin, each retirement by the system.
    const events = (await auditRowsOf(owner, tid)).filter((r) => r.action.startsWith('keys.'));
    expect(events.map((e) => [e.action, e.version, e.details])).toEqual([
      ['keys.read', null, null],
      ['keys.rotate', 2, { retiring: '1' }],
      ['keys.retire', null, { versions: '1' }],
      ['keys.read', null, null],
      ['keys.rotate', 3, { retiring: '2' }],
      ['keys.retire', null, { versions: '2' }],
      ['keys.read', null, null],
    ]);
    expect(firstBrokenLink(await auditRowsOf(owner, tid))).toBeNull();
  });

  it('re-encryption that stops part-way is resumed by another instance, and no read or write waits on it', async () => {
    const { tid, api, ops } = await tenantCtx(t, root);
    await seedBundle(api, 'app', 30, 'first');
    await seedBundle(api, 'app', 30, 'second');
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) ids.push(await secretIdOf(owner, tid, `sandbox/app/N_${String(i).padStart(4, '0')}`));

    // Another session holds 40 of the 60 versions (both versions of the first 20 secrets) while the key rotates,
    // so the background re-encryption moves only the others and stops with the old key still in use.
    const holder = new pg.Client({ connectionString: inject('ownerDatabaseUrl') });
    await holder.connect();
    try {
      await holder.query('begin');
      const held = await holder.query(
        'select 1 from coffer.secret_versions where tenant_id = $1 and secret_id = any($2::uuid[]) for update',
        [tid, ids],
      );
      expect(held.rowCount).toBe(40);
      expect(expectOk(await ops.rotateKey(), 202, RotateDataKeyResponse).keyVersion).toBe(2);
      await t.app.jobs.rekey.rekey(tid);
      expect(await dekCounts(tid)).toEqual({ 1: 40, 2: 20 });
      // Reads and writes of the held rows' secrets go on meanwhile.
      expect(expectOk(await api.get('sandbox/app/N_0003'), 200, SecretWithValue).value).toBe('second-3');
      expect(expectOk(await api.get('sandbox/app/N_0003', 1), 200, SecretWithValue).value).toBe('first-3');
      expect((await api.put('sandbox/app/N_0003', { value: 'third-3' })).statusCode).toBe(200);
      expect((await keysOf(ops)).items).toMatchObject([
        { version: 1, state: 'retiring', ciphertexts: 40 },
        { version: 2, state: 'active', ciphertexts: 21 },
      ]);
      await holder.query('commit');
    } finally {
      await holder.end();
    }

    // Two small batches by hand, then the worker "crashes" (stops).
    const set = await new TenantKeyCache(t.db, masterKeyring()).get(tid);
    const queries = dataKeyQueries(t.db);
    expect(await queries.reencryptBatch(tid, set.sqlKeys, set.activeVersion, set.activeKey, 5)).toBe(5);
    expect(await queries.reencryptBatch(tid, set.sqlKeys, set.activeVersion, set.activeKey, 5)).toBe(5);
    expect((await keysOf(ops)).items.map((k) => [k.state, k.ciphertexts])).toEqual([
      ['retiring', 30],
      ['active', 31],
    ]);

    // Another instance's job picks up the rest from the database.
    const other = await createTestApp(ENV);
    try {
      expect(await other.app.jobs.rekey.rekeyAll()).toBeGreaterThanOrEqual(30);
    } finally {
      await other.close();
    }
    expect(await dekCounts(tid)).toEqual({ 2: 61 });
    expect((await keyRows(tid)).map((r) => [r.version, r.state, r.wrapped_len, r.retired_at !== null])).toEqual([
      [1, 'retired', 0, true],
      [2, 'active', 60, false],
    ]);
    const bundle = expectOk(await api.bundle('sandbox', 'app'), 200, Bundle).values;
    for (let i = 0; i < 30; i++) {
      expect(bundle[`N_${String(i).padStart(4, '0')}`]).toBe(i === 3 ? 'third-3' : `second-${i}`);
      expect(
        expectOk(await api.get(`sandbox/app/N_${String(i).padStart(4, '0')}`, 1), 200, SecretWithValue).value,
      ).toBe(`first-${i}`);
    }
  });

  it('an instance closed in the middle of re-encrypting leaves work another instance finishes', async () => {
    const x = await createTestApp(ENV);
    let ctx: TenantCtx;
    try {
      ctx = await tenantCtx(x, await rootToken(x.app));
      await seedBundle(ctx.api, 'big', 750, 'a');
      await seedBundle(ctx.api, 'big', 750, 'b');
      expect(await dekCounts(ctx.tid)).toEqual({ 1: 1500 });
      expect(expectOk(await ctx.ops.rotateKey(), 202, RotateDataKeyResponse).keyVersion).toBe(2);
    } finally {
      // Closed at once: the re-encryption the rotation started is cut off wherever it was.
      await x.close();
    }

    const y = await createTestApp(ENV);
    try {
      await y.app.jobs.rekey.rekeyAll();
      expect(await dekCounts(ctx.tid)).toEqual({ 2: 1500 });
      expect((await keyRows(ctx.tid)).map((r) => [r.state, r.wrapped_len])).toEqual([
        ['retired', 0],
        ['active', 60],
      ]);
      // Every value reads back, through the instance that finished the job.
      const api = secretsApi(y.app, ctx.tenant.adminToken);
      const values = expectOk(await api.bundle('sandbox', 'big'), 200, Bundle).values;
      expect(Object.keys(values)).toHaveLength(750);
      for (let i = 0; i < 750; i++) expect(values[`N_${String(i).padStart(4, '0')}`]).toBe(`b-${i}`);
      for (const i of [0, 123, 499, 500, 749]) {
        const p = `sandbox/big/N_${String(i).padStart(4, '0')}`;
        expect(expectOk(await api.get(p, 1), 200, SecretWithValue).value).toBe(`a-${i}`);
      }
    } finally {
      await y.close();
    }
  });
});

// Regression: a rotation that waited on the key rows' locks re-read them without the key the other one added, and
// answered 500.
it('concurrent data-key rotations each get the next version; none fails', async () => {
  const { tid, ops } = await tenantCtx(t, root);
  const results = await Promise.all(Array.from({ length: 6 }, () => ops.rotateKey()));
  expect(results.map((r) => r.statusCode)).toEqual([202, 202, 202, 202, 202, 202]);
  const versions = results.map((r) => RotateDataKeyResponse.parse(r.json()).keyVersion).sort((x, y) => x - y);
  expect(versions).toEqual([2, 3, 4, 5, 6, 7]);
  await t.app.jobs.rekey.rekey(tid);
  expect((await keyRows(tid)).map((r) => r.state)).toEqual([...Array<string>(6).fill('retired'), 'active']);
});

describe('data keys under load', () => {
  it('rotating twice while two instances read and write: zero failed reads, zero failed writes', async () => {
    const b = await createTestApp(ENV);
    try {
      const { tenant, tid, api } = await tenantCtx(t, root);
      await seedBundle(api, 'r', 200, 'v1');
      await seedBundle(api, 'r', 200, 'v2');
      const apis = [api, secretsApi(b.app, tenant.adminToken)] as const;
      const opsA = opsApi(t.app, tenant.adminToken);
      const opsB = opsApi(b.app, tenant.adminToken);
      const name = (i: number) => `sandbox/r/N_${String(i).padStart(4, '0')}`;

      const failures: string[] = [];
      let reads = 0;
      let writes = 0;
      let stop = false;
      const lastWritten = new Map<string, string>();
      const check = (res: Response, ok: number[], what: string) => {
        if (!ok.includes(res.statusCode)) failures.push(`${what}: ${res.statusCode} ${res.body.slice(0, 200)}`);
      };

      const reader = async (w: number) => {
        for (let n = 0; !stop; n++) {
          const i = (w * 7919 + n * 31) % 200;
          const via = apis[n % 2] as SecretsApi;
          const old = n % 3 === 0;
          const res = await via.get(name(i), old ? 1 : undefined);
          reads++;
          check(res, [200], `read ${name(i)}${old ? '@1' : ''}`);
          if (res.statusCode === 200) {
            const expected = `${old ? 'v1' : 'v2'}-${i}`;
            const got = SecretWithValue.parse(res.json()).value;
            if (got !== expected) failures.push(`read ${name(i)}: got ${got}, expected ${expected}`);
          }
        }
      };
      const writer = async (w: number) => {
        for (let n = 0; !stop; n++) {
          const path = `sandbox/w/W_${w}`;
          const value = `w${w}-${n}`;
          const res = await (apis[n % 2] as SecretsApi).put(path, { value });
          writes++;
          check(res, [200, 201], `write ${path}`);
          if (res.statusCode < 300) lastWritten.set(path, value);
        }
      };
      const bundleReader = async () => {
        for (let n = 0; !stop; n++) {
          const res = await (apis[n % 2] as SecretsApi).bundle('sandbox', 'r');
          reads++;
          check(res, [200], 'bundle');
          if (res.statusCode === 200) {
            const values = Bundle.parse(res.json()).values;
            for (let i = 0; i < 200; i++) {
              const key = `N_${String(i).padStart(4, '0')}`;
              if (values[key] !== `v2-${i}`) failures.push(`bundle ${key}: ${values[key]}`);
            }
          }
        }
      };

      const load = Promise.all([
        ...Array.from({ length: 6 }, (_, w) => reader(w)),
        ...Array.from({ length: 3 }, (_, w) => writer(w)),
        bundleReader(),
      ]);
      // Each phase lasts until the load has made progress in it, however busy the machine is.
      const progress = async () => {
        const r0 = reads;
        const w0 = writes;
        await eventually(async () => reads >= r0 + 40 && writes >= w0 + 5, 15_000, 'load progress');
      };
      const rotations = (async () => {
        await progress();
        expect(expectOk(await opsA.rotateKey(), 202, RotateDataKeyResponse).keyVersion).toBe(2);
        await Promise.all([t.app.jobs.rekey.rekey(tid), b.app.jobs.rekey.rekey(tid)]);
        await progress();
        // The second rotation through the other instance, whose cached keys are now stale.
        expect(expectOk(await opsB.rotateKey(), 202, RotateDataKeyResponse).keyVersion).toBe(3);
        await Promise.all([t.app.jobs.rekey.rekey(tid), b.app.jobs.rekey.rekey(tid)]);
        await progress();
      })();
      try {
        await rotations;
      } finally {
        stop = true;
        await load;
      }

      expect(failures).toEqual([]);
      expect(reads).toBeGreaterThanOrEqual(120);
      expect(writes).toBeGreaterThanOrEqual(15);
      const counts = await dekCounts(tid);
      expect(Object.keys(counts)).toEqual(['3']);
      expect((await keyRows(tid)).map((r) => r.state)).toEqual(['retired', 'retired', 'active']);
      for (const [path, value] of lastWritten) {
        expect(expectOk(await api.get(path), 200, SecretWithValue).value).toBe(value);
      }
      expect(firstBrokenLink(await auditRowsOf(owner, tid))).toBeNull();
    } finally {
      await b.close();
    }
  });
});

describe('who may see and rotate data keys', () => {
  it('an auditor may list keys but not rotate; a service may do neither; each tenant sees its own', async () => {
    const a = await tenantCtx(t, root);
    const other = await tenantCtx(t, root);
    expect(expectOk(await other.ops.rotateKey(), 202, RotateDataKeyResponse).keyVersion).toBe(2);
    await t.app.jobs.rekey.rekey(other.tid);

    const auditor = await createIdentity(t.app, a.tenant.adminToken, { role: 'auditor' });
    const svc = await createIdentity(t.app, a.tenant.adminToken, {
      role: 'service',
      policies: [{ path: '**', capabilities: ['read', 'write', 'list', 'rotate', 'delete'] }],
    });
    const asAuditor = opsApi(t.app, auditor.token);
    expect((await keysOf(asAuditor)).items.map((k) => k.version)).toEqual([1]);
    expectError(await asAuditor.rotateKey(), 403, 'forbidden');
    expectError(await opsApi(t.app, svc.token).keys(), 403, 'forbidden');
    expectError(await opsApi(t.app, svc.token).rotateKey(), 403, 'forbidden');
    expectError(await opsApi(t.app, null).rotateKey(), 401, 'unauthorized');
    expectError(await opsApi(t.app, root).rotateKey(), 403, 'forbidden');
    expect((await keysOf(a.ops)).items.map((k) => [k.version, k.state])).toEqual([[1, 'active']]);
    expect((await keyRows(a.tid)).map((r) => r.version)).toEqual([1]);
    expect((await keysOf(other.ops)).items.map((k) => [k.version, k.state])).toEqual([
      [1, 'retired'],
      [2, 'active'],
    ]);
  });
});

describe('unwrapped data keys in memory', () => {
  it('key residue: a tenant left idle past the TTL has no unwrapped key left in memory, its buffers zeroed', async () => {
    const { tid, api } = await tenantCtx(t, root);
    expect((await api.put('sandbox/app/RESIDUE', { value: 'v' })).statusCode).toBe(201);
    const cache = new TenantKeyCache(t.db, masterKeyring(), { ttlMs: 300 });
    const set = await cache.get(tid);
    expect(set.activeKey).toMatch(/^[0-9a-f]{64}$/);
    expect(cache.size).toBe(1);
    const held = cache.heldBuffers(tid);
    // The data key and the fingerprint key, as buffers (strings cannot be zeroed).
    expect(held).toHaveLength(2);
    expect(held.every((b) => b.some((byte) => byte !== 0))).toBe(true);
    // Nobody asks for the tenant again: the entry must still go, on its own timer.
    await eventually(async () => cache.size === 0, 5_000, 'the idle tenant evicted');
    expect(held.map((b) => b.every((byte) => byte === 0))).toEqual([true, true]);

    // Invalidation and close zero too, while a view handed out before stays usable for its request.
    const again = await cache.get(tid);
    const reheld = cache.heldBuffers(tid);
    cache.close();
    expect(cache.size).toBe(0);
    expect(reheld.every((b) => b.every((byte) => byte === 0))).toBe(true);
    expect(again.activeKey).toBe(set.activeKey);
    expect(again.fingerprintKey?.some((byte) => byte !== 0)).toBe(true);
  });
});
