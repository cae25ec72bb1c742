import { Bundle, BundleWriteResponse, SecretMetadata, SecretVersions, SecretWithValue } from '@coffer/contracts';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rootToken } from '../support/factories.ts';
import { expectError, expectOk, ownerClient, secretsApi } from '../support/secrets.ts';
import { ownerSuite, tenantCtx } from '../support/suite.ts';
import { createTestApp, type TestApp } from '../support/test-app.ts';

let t: TestApp;
let owner: pg.Client;
let root: string;

ownerSuite((s) => {
  ({ t, owner, root } = s);
});

/** The stored version numbers of a secret, ascending. */
async function storedVersions(tenantId: string, name: string): Promise<number[]> {
  const { rows } = await owner.query<{ version: number }>(
    `select v.version from coffer.secret_versions v join coffer.secrets s on s.id = v.secret_id
     where s.tenant_id = $1 and s.name = $2 order by v.version`,
    [tenantId, name],
  );
  return rows.map((r) => r.version);
}

async function auditedWrites(tenantId: string, name: string): Promise<number[]> {
  const { rows } = await owner.query<{ version: number }>(
    `select version from coffer.audit_events where tenant_id = $1 and action = 'secrets.write' and outcome = 'allowed'
     and resource like '%/' || $2 order by version`,
    [tenantId, name],
  );
  return rows.map((r) => r.version);
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('compare-and-set under contention', () => {
  it('20 concurrent PUTs with the same ifVersion: exactly one wins, 19 conflict, no gap in versions', async () => {
    const { tenant, api } = await tenantCtx(t, root);
    expectOk(await api.put('sandbox/race/CAS', { value: 'v1' }), 201, SecretMetadata);
    expectOk(await api.put('sandbox/race/CAS', { value: 'v2' }), 200, SecretMetadata);
    const results = await Promise.all(
      range(1, 20).map((i) => api.put('sandbox/race/CAS', { value: `w${i}`, ifVersion: 2 })),
    );
    const winners = results.filter((r) => r.statusCode === 200);
    const losers = results.filter((r) => r.statusCode === 409);
    expect(results.map((r) => r.statusCode).sort()).toEqual([200, ...Array<number>(19).fill(409)]);
    for (const l of losers) expectError(l, 409, 'conflict');
    const winner = winners[0];
    if (!winner) throw new Error('no winner');
    expect(SecretMetadata.parse(winner.json()).version).toBe(3);

    const winningValue = `w${results.indexOf(winner) + 1}`;
    expect(expectOk(await api.get('sandbox/race/CAS'), 200, SecretWithValue)).toMatchObject({
      version: 3,
      value: winningValue,
    });
    expect(await storedVersions(tenant.tenant.id, 'CAS')).toEqual([1, 2, 3]);
    expect(await auditedWrites(tenant.tenant.id, 'CAS')).toEqual([1, 2, 3]);
  });

  it('20 concurrent PUTs without ifVersion on a new name: all succeed, versions 1..20 exactly once', async () => {
    const { tenant, api } = await tenantCtx(t, root);
    const results = await Promise.all(range(1, 20).map((i) => api.put('user/race/FRESH', { value: `value-${i}` })));
    expect(results.filter((r) => r.statusCode === 201)).toHaveLength(1);
    expect(results.filter((r) => r.statusCode === 200)).toHaveLength(19);
    const versions = results.map((r) => SecretMetadata.parse(r.json()).version).sort((a, b) => a - b);
    expect(versions).toEqual(range(1, 20));
    expect(await storedVersions(tenant.tenant.id, 'FRESH')).toEqual(range(1, 20));
    expect(await auditedWrites(tenant.tenant.id, 'FRESH')).toEqual(range(1, 20));

    // Each version holds the value of the request that was told it got that version.
    for (const r of results) {
      const meta = SecretMetadata.parse(r.json());
      const i = results.indexOf(r) + 1;
      expect(expectOk(await api.get('user/race/FRESH', meta.version), 200, SecretWithValue).value).toBe(`value-${i}`);
    }
    const states = expectOk(await api.versions('user/race/FRESH'), 200, SecretVersions).items;
    expect(states[0]).toMatchObject({ version: 20, state: 'current' });
  });

  it('concurrent creation with ifVersion 0: one 201, the rest 409', async () => {
    const { tenant, api } = await tenantCtx(t, root);
    const results = await Promise.all(
      range(1, 20).map((i) => api.put('shared/race/ONCE', { value: `c${i}`, ifVersion: 0 })),
    );
    expect(results.map((r) => r.statusCode).sort()).toEqual([201, ...Array<number>(19).fill(409)]);
    const created = results.find((r) => r.statusCode === 201);
    if (!created) throw new Error('none created');
    expect(expectOk(await api.get('shared/race/ONCE'), 200, SecretWithValue)).toMatchObject({
      version: 1,
      value: `c${results.indexOf(created) + 1}`,
    });
    expect(await storedVersions(tenant.tenant.id, 'ONCE')).toEqual([1]);
    const { rows } = await owner.query<{ n: string }>(
      "select count(*) as n from coffer.secrets where tenant_id = $1 and name = 'ONCE'",
      [tenant.tenant.id],
    );
    expect(rows[0]?.n).toBe('1');
  });

  it('concurrent bundle writes over the same names serialise: each one applies wholly or not at all', async () => {
    const { tenant, api } = await tenantCtx(t, root);
    expectOk(
      await api.writeBundle('sandbox', 'race', { set: { A: { value: 'a0' }, B: { value: 'b0' }, C: { value: 'c0' } } }),
      200,
      BundleWriteResponse,
    );
    // Opposite name orders in the bodies: the server must lock in one order (no deadlock).
    const results = await Promise.all(
      range(1, 10).map((i) =>
        api.writeBundle(
          'sandbox',
          'race',
          i % 2 === 0
            ? { set: { A: { value: `a${i}`, ifVersion: 1 }, C: { value: `c${i}`, ifVersion: 1 } } }
            : {
                set: {
                  C: { value: `c${i}`, ifVersion: 1 },
                  B: { value: `b${i}` },
                  A: { value: `a${i}`, ifVersion: 1 },
                },
              },
        ),
      ),
    );
    expect(results.map((r) => r.statusCode).sort()).toEqual([200, ...Array<number>(9).fill(409)]);
    const winner = results.findIndex((r) => r.statusCode === 200) + 1;
    expect(expectOk(await api.get('sandbox/race/A'), 200, SecretWithValue).value).toBe(`a${winner}`);
    expect(expectOk(await api.get('sandbox/race/C'), 200, SecretWithValue).value).toBe(`c${winner}`);
    expect(expectOk(await api.get('sandbox/race/B'), 200, SecretWithValue).value).toBe(
      winner % 2 === 0 ? 'b0' : `b${winner}`,
    );
    expect(await storedVersions(tenant.tenant.id, 'A')).toEqual([1, 2]);
  });
});

describe('connection use', () => {
  let small: TestApp;
  beforeAll(async () => {
    // A small pool and a short acquire timeout make a request that needs two connections at once fail fast.
    small = await createTestApp({ COFFER_DB_POOL_MAX: '3', COFFER_DB_ACQUIRE_TIMEOUT_MS: '500' });
  });
  afterAll(() => small.close());

  it('concurrent writes without a custom pattern queue for connections and all succeed', async () => {
    const { tenant, api } = await tenantCtx(small, await rootToken(small.app));
    expectOk(await api.put('sandbox/pool/PLAIN', { value: 'ab', format: 'hex' }), 201, SecretMetadata);
    const results = await Promise.all(range(1, 12).map(() => api.put('sandbox/pool/PLAIN', { value: 'abcd' })));
    expect(results.map((r) => r.statusCode)).toEqual(Array<number>(12).fill(200));
    expect(await storedVersions(tenant.tenant.id, 'PLAIN')).toEqual(range(1, 13));
  });

  // Regression: the custom-pattern check once took a second pool connection inside the write's transaction,
  // so as many concurrent writes as pool connections deadlocked until the acquire timeout (503s).
  it('concurrent writes to a secret with a custom pattern all succeed', async () => {
    const { tenant, api } = await tenantCtx(small, await rootToken(small.app));
    expectOk(
      await api.put('sandbox/pool/PATTERN', { value: 'abc', format: { pattern: '^[a-z]+$' } }),
      201,
      SecretMetadata,
    );
    const results = await Promise.all(range(1, 12).map(() => api.put('sandbox/pool/PATTERN', { value: 'abcd' })));
    expect(results.map((r) => r.statusCode)).toEqual(Array<number>(12).fill(200));
    expect(await storedVersions(tenant.tenant.id, 'PATTERN')).toEqual(range(1, 13));
  });
});

/**
 * A write is planned on the row as this replica last saw it, and coffer.write_secrets applies it only if that row is
 * still current; concurrent writes of one secret are planned on the row the one before will leave, and may share a
 * statement. These are the cases where what was planned on is wrong.
 */
describe('writes planned on a row that moved', () => {
  let other: TestApp;
  beforeAll(async () => {
    other = await createTestApp();
  });
  afterAll(() => other.close());

  it("another replica's change is neither lost nor mistaken for a conflict", async () => {
    const { tenant, api } = await tenantCtx(t, root);
    const elsewhere = secretsApi(other.app, tenant.adminToken);
    expectOk(await api.put('sandbox/moved/K', { value: 'v1', description: 'first' }), 201, SecretMetadata);
    // Another replica writes a version and changes a field the row MAC does not cover.
    expectOk(await elsewhere.put('sandbox/moved/K', { value: 'v2' }), 200, SecretMetadata);
    const patched = await elsewhere.send('PATCH', '/v1/secrets/sandbox/moved/K', { description: 'second' });
    expect(patched.statusCode, patched.body).toBe(200);
    // This replica last saw version 1: its compare-and-set on version 2 holds, and the description stays.
    const meta = expectOk(await api.put('sandbox/moved/K', { value: 'v3', ifVersion: 2 }), 200, SecretMetadata);
    expect(meta).toMatchObject({ version: 3, description: 'second' });
    expectError(await api.put('sandbox/moved/K', { value: 'v4', ifVersion: 2 }), 409, 'conflict');
    expect(expectOk(await elsewhere.get('sandbox/moved/K'), 200, SecretWithValue)).toMatchObject({
      version: 3,
      value: 'v3',
      description: 'second',
    });
    expect(await storedVersions(tenant.tenant.id, 'K')).toEqual([1, 2, 3]);
  });

  it('a secret created by another replica since is updated, not created twice', async () => {
    const { tenant, api } = await tenantCtx(t, root);
    const elsewhere = secretsApi(other.app, tenant.adminToken);
    expectOk(await elsewhere.put('sandbox/moved/NEW', { value: 'a' }), 201, SecretMetadata);
    // This replica has never seen it: planned as a create, refused in the database, planned again as an update.
    expect(expectOk(await api.put('sandbox/moved/NEW', { value: 'b' }), 200, SecretMetadata).version).toBe(2);
    expectOk(
      await api.writeBundle('sandbox', 'moved', { set: { NEW: { value: 'c', ifVersion: 2 }, OTHER: { value: 'd' } } }),
      200,
      BundleWriteResponse,
    );
    expect(await storedVersions(tenant.tenant.id, 'NEW')).toEqual([1, 2, 3]);
  });

  it('writes queued behind one planned on a row that moved all apply, in order', async () => {
    const { tenant, api } = await tenantCtx(t, root);
    const elsewhere = secretsApi(other.app, tenant.adminToken);
    expectOk(await api.put('sandbox/chain/Q', { value: 'q1' }), 201, SecretMetadata);
    expectOk(await elsewhere.put('sandbox/chain/Q', { value: 'q2' }), 200, SecretMetadata);
    // The first is planned on version 1 and refused in the database; the others were planned on top of it.
    const results = await Promise.all(range(1, 12).map((i) => api.put('sandbox/chain/Q', { value: `w${i}` })));
    expect(results.map((r) => r.statusCode)).toEqual(Array<number>(12).fill(200));
    const versions = results.map((r) => SecretMetadata.parse(r.json()).version).sort((a, b) => a - b);
    expect(versions).toEqual(range(3, 14));
    expect(await auditedWrites(tenant.tenant.id, 'Q')).toEqual(range(1, 14));
  });

  it('a write queued behind one that fails its format applies on the row as it is', async () => {
    const { tenant, api } = await tenantCtx(t, root);
    expectOk(
      await api.put('sandbox/chain/P', { value: 'start', format: { pattern: '^[a-z]+$' } }),
      201,
      SecretMetadata,
    );
    // Every other write fails the secret's custom pattern (decided in the database); the ones after it were
    // planned on the version it would have made.
    const results = await Promise.all(
      range(1, 20).map((i) => api.put('sandbox/chain/P', { value: i % 2 === 0 ? `ok${'x'.repeat(i)}` : `no${i}` })),
    );
    for (const [i, r] of results.entries()) {
      if ((i + 1) % 2 === 0) expectOk(r, 200, SecretMetadata);
      else expectError(r, 422, 'unprocessable');
    }
    const versions = results
      .filter((r) => r.statusCode === 200)
      .map((r) => SecretMetadata.parse(r.json()).version)
      .sort((a, b) => a - b);
    expect(versions).toEqual(range(2, 11));
    expect(await storedVersions(tenant.tenant.id, 'P')).toEqual(range(1, 11));
    for (const r of results.filter((x) => x.statusCode === 200)) {
      const { version } = SecretMetadata.parse(r.json());
      const i = results.indexOf(r) + 1;
      expect(expectOk(await api.get('sandbox/chain/P', version), 200, SecretWithValue).value).toBe(
        `ok${'x'.repeat(i)}`,
      );
    }
  });

  it('concurrent bundle writes of 20 names each all apply, each wholly', async () => {
    const { tenant, api } = await tenantCtx(t, root);
    const bundle = (i: number) =>
      Object.fromEntries(range(1, 20).map((n) => [`K${String(n).padStart(2, '0')}`, { value: `b${i}-${n}` }]));
    // Each is planned on the rows the one before will leave, twenty rows at a time.
    const results = await Promise.all(range(1, 12).map((i) => api.writeBundle('sandbox', 'wide', { set: bundle(i) })));
    expect(results.map((r) => r.statusCode)).toEqual(Array<number>(12).fill(200));
    const last = results
      .map((r, i) => ({ i: i + 1, v: BundleWriteResponse.parse(r.json()).versions.K01 }))
      .sort((a, b) => (b.v ?? 0) - (a.v ?? 0))[0];
    expect(last?.v).toBe(12);
    const read = expectOk(await api.bundle('sandbox', 'wide'), 200, Bundle);
    for (const n of range(1, 20)) expect(read.values[`K${String(n).padStart(2, '0')}`]).toBe(`b${last?.i}-${n}`);
    expect(await storedVersions(tenant.tenant.id, 'K20')).toEqual(range(1, 12));
  });

  it("a row another transaction holds does not hold up the tenant's other writes that share its statement", async () => {
    const { tenant, api } = await tenantCtx(t, root);
    expectOk(await api.put('sandbox/held/LOCKED', { value: 'a' }), 201, SecretMetadata);
    expectOk(await api.put('sandbox/held/FREE', { value: 'a' }), 201, SecretMetadata);
    const holder = await ownerClient();
    try {
      await holder.query('begin');
      await holder.query("select 1 from coffer.secrets where tenant_id = $1 and name = 'LOCKED' for update", [
        tenant.tenant.id,
      ]);
      let lockedDone = false;
      const locked = api.put('sandbox/held/LOCKED', { value: 'b' }).then((r) => {
        lockedDone = true;
        return r;
      });
      // Sent while the first waits on the held row, and answered while it still does.
      const free = await api.put('sandbox/held/FREE', { value: 'b' });
      expectOk(free, 200, SecretMetadata);
      expect(lockedDone).toBe(false);
      await holder.query('commit');
      expect(expectOk(await locked, 200, SecretMetadata).version).toBe(2);
    } finally {
      await holder.end();
    }
    expect(await storedVersions(tenant.tenant.id, 'LOCKED')).toEqual([1, 2]);
  });

  it("concurrent writes of many secrets of one tenant share commits and keep the tenant's chain whole", async () => {
    const { tenant, api, ops } = await tenantCtx(t, root);
    const results = await Promise.all(
      range(1, 30).flatMap((i) => [
        api.put(`sandbox/many/S${i % 10}`, { value: `v${i}` }),
        api.writeBundle('sandbox', `many-b${i % 3}`, { set: { A: { value: `a${i}` }, B: { value: `b${i}` } } }),
      ]),
    );
    expect(results.map((r) => r.statusCode).filter((s) => s !== 200 && s !== 201)).toEqual([]);
    for (let n = 0; n < 10; n++) expect(await storedVersions(tenant.tenant.id, `S${n}`)).toEqual(range(1, 3));
    const verified = await ops.verify();
    expect(verified.statusCode, verified.body).toBe(200);
    expect(verified.json()).toMatchObject({ ok: true });
    const { rows } = await owner.query<{ n: string }>(
      "select count(*) as n from coffer.audit_events where tenant_id = $1 and action = 'secrets.write'",
      [tenant.tenant.id],
    );
    expect(Number(rows[0]?.n)).toBe(30 + 30 * 2);
  });
});
