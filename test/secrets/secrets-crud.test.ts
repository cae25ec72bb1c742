import {
  Bundle,
  BundleWriteResponse,
  SecretMetadata,
  SecretPage,
  SecretVersions,
  SecretWithValue,
} from '@coffer/contracts';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, createIdentity, createTenant, rootToken } from '../support/factories.ts';
import { expectEmpty, expectError, expectOk, identityIdOf, type SecretsApi, secretsApi } from '../support/secrets.ts';
import { ownerSuite, tenantCtx } from '../support/suite.ts';
import { createTestApp, type TestApp } from '../support/test-app.ts';

let t: TestApp;
let owner: pg.Client;
let root: string;

ownerSuite((s) => {
  ({ t, owner, root } = s);
});

async function seed(api: SecretsApi, path: string, value: string): Promise<SecretMetadata> {
  const res = await api.put(path, { value });
  expect([200, 201]).toContain(res.statusCode);
  return SecretMetadata.parse(res.json());
}

async function currentValue(api: SecretsApi, path: string): Promise<{ value: string; version: number }> {
  const body = expectOk(await api.get(path), 200, SecretWithValue);
  return { value: body.value, version: body.version };
}

async function secretId(tenantId: string, kind: string, ownerName: string, name: string): Promise<string | undefined> {
  const { rows } = await owner.query<{ id: string }>(
    'select id from coffer.secrets where tenant_id = $1 and kind = $2 and owner = $3 and name = $4',
    [tenantId, kind, ownerName, name],
  );
  return rows[0]?.id;
}

/** Every item of a listing, page by page, with the page size given. */
async function listAll(api: SecretsApi, query: Record<string, string | number>): Promise<SecretMetadata[]> {
  const items: SecretMetadata[] = [];
  let cursor: string | undefined;
  for (let pages = 0; pages < 100; pages++) {
    const page = expectOk(await api.list({ ...query, cursor }), 200, SecretPage);
    items.push(...page.items);
    if (page.nextCursor === null) return items;
    cursor = page.nextCursor;
  }
  throw new Error('pagination did not end');
}

const names = (items: readonly { kind: string; owner: string; name: string }[]) =>
  items.map((i) => `${i.kind}/${i.owner}/${i.name}`);

describe('PUT and GET', () => {
  it('creates with 201, adds versions with 200, and never returns the value in the metadata', async () => {
    const { tenant, api } = await tenantCtx(t, root);
    const created = await api.put('sandbox/sbx-1/API_KEY', { value: 'first-value' });
    const meta = expectOk(created, 201, SecretMetadata);
    expect(meta).toMatchObject({
      kind: 'sandbox',
      owner: 'sbx-1',
      name: 'API_KEY',
      version: 1,
      description: null,
      tags: [],
      format: null,
      expiresAt: null,
      createdBy: await identityIdOf(t.app, tenant.adminToken),
    });
    expect(created.json()).not.toHaveProperty('value');
    expect(created.body).not.toContain('first-value');

    const second = await api.put('sandbox/sbx-1/API_KEY', { value: 'second-value' });
    expect(expectOk(second, 200, SecretMetadata).version).toBe(2);
    expect(second.body).not.toContain('second-value');
    const third = expectOk(await api.put('sandbox/sbx-1/API_KEY', { value: 'third-value' }), 200, SecretMetadata);
    expect(third.version).toBe(3);
    expect(third.createdAt).toBe(meta.createdAt);

    const current = expectOk(await api.get('sandbox/sbx-1/API_KEY'), 200, SecretWithValue);
    expect(current).toMatchObject({
      kind: 'sandbox',
      owner: 'sbx-1',
      name: 'API_KEY',
      version: 3,
      value: 'third-value',
    });
    expect(expectOk(await api.get('sandbox/sbx-1/API_KEY', 1), 200, SecretWithValue)).toMatchObject({
      version: 1,
      value: 'first-value',
    });
    expect(expectOk(await api.get('sandbox/sbx-1/API_KEY', 2), 200, SecretWithValue).value).toBe('second-value');
    expectError(await api.get('sandbox/sbx-1/API_KEY', 4), 404, 'not_found');
    expectError(await api.get('sandbox/sbx-1/API_KEY', 0), 400, 'validation_failed');
    expectError(await api.get('sandbox/sbx-1/API_KEY', 'abc'), 400, 'validation_failed');
  });

  it('keeps the same name apart across kinds and owners', async () => {
    const { api } = await tenantCtx(t, root);
    await seed(api, 'sandbox/a/TOKEN', 'sandbox-a');
    await seed(api, 'sandbox/b/TOKEN', 'sandbox-b');
    await seed(api, 'user/a/TOKEN', 'user-a');
    await seed(api, 'shared/a/TOKEN', 'shared-a');
    expect((await currentValue(api, 'sandbox/a/TOKEN')).value).toBe('sandbox-a');
    expect((await currentValue(api, 'sandbox/b/TOKEN')).value).toBe('sandbox-b');
    expect((await currentValue(api, 'user/a/TOKEN')).value).toBe('user-a');
    expect((await currentValue(api, 'shared/a/TOKEN')).value).toBe('shared-a');
  });

  it('answers 404 for a secret that does not exist', async () => {
    const { api } = await tenantCtx(t, root);
    const err = expectError(await api.get('sandbox/x/NOPE'), 404, 'not_found');
    expect(err.message).toBe('secret not found');
  });

  it('round-trips metadata: omitted fields are kept, null clears them', async () => {
    const { api } = await tenantCtx(t, root);
    const expiresAt = new Date(Date.now() + 3_600_000).toISOString();
    const created = expectOk(
      await api.put('user/alice/GITHUB_TOKEN', {
        value: 'ghp_1234',
        description: 'CI token',
        tags: ['team:ci', 'env=prod'],
        format: { pattern: '^ghp_[0-9]+$', minLength: 5, maxLength: 64 },
        expiresAt,
      }),
      201,
      SecretMetadata,
    );
    const expected = {
      description: 'CI token',
      tags: ['team:ci', 'env=prod'],
      format: { pattern: '^ghp_[0-9]+$', minLength: 5, maxLength: 64 },
      expiresAt,
    };
    expect(created).toMatchObject(expected);
    expect(expectOk(await api.get('user/alice/GITHUB_TOKEN'), 200, SecretWithValue)).toMatchObject({
      ...expected,
      value: 'ghp_1234',
    });

    // A PUT that names only the value keeps every other field, and the kept format still applies.
    const kept = expectOk(await api.put('user/alice/GITHUB_TOKEN', { value: 'ghp_5678' }), 200, SecretMetadata);
    expect(kept).toMatchObject({ ...expected, version: 2 });
    expect(Date.parse(kept.updatedAt)).toBeGreaterThanOrEqual(Date.parse(created.updatedAt));
    expectError(await api.put('user/alice/GITHUB_TOKEN', { value: 'not-a-token' }), 422, 'unprocessable');

    // Changing one field leaves the others.
    const retagged = expectOk(
      await api.put('user/alice/GITHUB_TOKEN', { value: 'ghp_9', tags: ['rotated'] }),
      200,
      SecretMetadata,
    );
    expect(retagged).toMatchObject({ ...expected, tags: ['rotated'], version: 3 });

    // null clears description, format and expiry; an empty list clears the tags.
    const cleared = expectOk(
      await api.put('user/alice/GITHUB_TOKEN', {
        value: 'anything goes now',
        description: null,
        format: null,
        expiresAt: null,
        tags: [],
      }),
      200,
      SecretMetadata,
    );
    expect(cleared).toMatchObject({ description: null, format: null, expiresAt: null, tags: [], version: 4 });
    expect(expectOk(await api.get('user/alice/GITHUB_TOKEN'), 200, SecretWithValue)).toMatchObject({
      description: null,
      format: null,
      expiresAt: null,
      tags: [],
      value: 'anything goes now',
    });
  });

  it('refuses an expiry in the past and malformed metadata', async () => {
    const { api } = await tenantCtx(t, root);
    const past = expectError(
      await api.put('sandbox/x/K', { value: 'v', expiresAt: new Date(Date.now() - 1000).toISOString() }),
      400,
      'validation_failed',
    );
    expect(past.details).toEqual([{ path: 'body.expiresAt', message: 'must be in the future' }]);
    expectError(await api.put('sandbox/x/K', { value: 'v', expiresAt: 'tomorrow' }), 400, 'validation_failed');
    expectError(await api.put('sandbox/x/K', { value: 'v', tags: ['has space'] }), 400, 'validation_failed');
    expectError(await api.put('sandbox/x/K', { value: 'v', description: 'd'.repeat(1001) }), 400, 'validation_failed');
    expectError(await api.put('sandbox/x/K', { value: 42 }), 400, 'validation_failed');
    expectError(await api.put('sandbox/x/K', {}), 400, 'validation_failed');
    expectError(await api.put('sandbox/x/K', { value: 'v', ifVersion: -1 }), 400, 'validation_failed');
    expectError(await api.get('sandbox/x/K'), 404, 'not_found');
  });
});

describe('compare-and-set', () => {
  it('ifVersion 0 creates only a new secret; ifVersion n only over version n; a mismatch writes nothing', async () => {
    const { tenant, api } = await tenantCtx(t, root);
    expect(
      expectOk(await api.put('shared/ops/DB_PASS', { value: 'one', ifVersion: 0 }), 201, SecretMetadata).version,
    ).toBe(1);
    const exists = expectError(await api.put('shared/ops/DB_PASS', { value: 'x', ifVersion: 0 }), 409, 'conflict');
    expect(exists.message).toContain('already exists');
    expect(
      expectOk(await api.put('shared/ops/DB_PASS', { value: 'two', ifVersion: 1 }), 200, SecretMetadata).version,
    ).toBe(2);
    const stale = expectError(await api.put('shared/ops/DB_PASS', { value: 'lost', ifVersion: 1 }), 409, 'conflict');
    expect(stale.message).toContain('current version is 2');
    expectError(await api.put('shared/ops/DB_PASS', { value: 'future', ifVersion: 7 }), 409, 'conflict');
    expectError(await api.put('shared/ops/NEW_ONE', { value: 'x', ifVersion: 1 }), 409, 'conflict');

    expect(await currentValue(api, 'shared/ops/DB_PASS')).toEqual({ value: 'two', version: 2 });
    const id = await secretId(tenant.tenant.id, 'shared', 'ops', 'DB_PASS');
    const { rows } = await owner.query('select version from coffer.secret_versions where secret_id = $1 order by 1', [
      id,
    ]);
    expect(rows).toEqual([{ version: 1 }, { version: 2 }]);
    expect(await secretId(tenant.tenant.id, 'shared', 'ops', 'NEW_ONE')).toBeUndefined();
  });
});

describe('versions', () => {
  it('lists versions newest first with their states, never their values', async () => {
    const { tenant, api } = await tenantCtx(t, root);
    for (const v of ['v-one', 'v-two', 'v-three', 'v-four']) await seed(api, 'sandbox/s/ROTATED', v);
    const res = await api.versions('sandbox/s/ROTATED');
    const body = expectOk(res, 200, SecretVersions);
    expect(body.items.map((i) => [i.version, i.state, i.destroyedAt])).toEqual([
      [4, 'current', null],
      [3, 'previous', null],
      [2, 'old', null],
      [1, 'old', null],
    ]);
    const adminId = await identityIdOf(t.app, tenant.adminToken);
    expect(body.items.map((i) => i.createdBy)).toEqual([adminId, adminId, adminId, adminId]);
    for (const v of ['v-one', 'v-two', 'v-three', 'v-four']) expect(res.body).not.toContain(v);
    expectError(await api.versions('sandbox/s/MISSING'), 404, 'not_found');
  });

  it('names the identity that made each version, as it is called now, and none once it is deleted', async () => {
    const { tenant, api } = await tenantCtx(t, root);
    const writer = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      name: 'deploy-bot',
      policies: [{ path: 'sandbox/n/*', capabilities: ['write', 'read', 'list'] }],
    });
    await seed(api, 'sandbox/n/KEY', 'by-admin');
    expectOk(await secretsApi(t.app, writer.token).put('sandbox/n/KEY', { value: 'by-bot' }), 200, SecretMetadata);
    const names = async () =>
      expectOk(await api.versions('sandbox/n/KEY'), 200, SecretVersions).items.map((i) => [
        i.version,
        i.createdBy,
        i.createdByName,
      ]);
    const adminId = await identityIdOf(t.app, tenant.adminToken);
    const adminName = (await t.app.inject({ url: '/v1/auth/whoami', headers: bearer(tenant.adminToken) })).json()
      .name as string;
    expect(await names()).toEqual([
      [2, writer.identity.id, 'deploy-bot'],
      [1, adminId, adminName],
    ]);
    const rename = await t.app.inject({
      method: 'PATCH',
      url: `/v1/identities/${writer.identity.id}`,
      headers: bearer(tenant.adminToken),
      payload: { name: 'release-bot' },
    });
    expect(rename.statusCode).toBe(200);
    expect((await names())[0]).toEqual([2, writer.identity.id, 'release-bot']);
    const removed = await t.app.inject({
      method: 'DELETE',
      url: `/v1/identities/${writer.identity.id}`,
      headers: bearer(tenant.adminToken),
    });
    expect(removed.statusCode).toBe(204);
    expect((await names())[0]).toEqual([2, writer.identity.id, null]);
  });

  it('destroys an old version: its state is destroyed, reading it is 410 gone, its ciphertext is erased', async () => {
    const { tenant, api } = await tenantCtx(t, root);
    for (const v of ['one', 'two', 'three']) await seed(api, 'sandbox/s/KEY', v);
    expectEmpty(await api.destroy('sandbox/s/KEY', 2));
    const items = expectOk(await api.versions('sandbox/s/KEY'), 200, SecretVersions).items;
    expect(items.map((i) => [i.version, i.state])).toEqual([
      [3, 'current'],
      [2, 'destroyed'],
      [1, 'old'],
    ]);
    expect(items[1]?.destroyedAt).not.toBeNull();
    expect(expectError(await api.get('sandbox/s/KEY', 2), 410, 'gone').message).toContain('destroyed');
    expect(expectOk(await api.get('sandbox/s/KEY', 1), 200, SecretWithValue).value).toBe('one');
    expect((await currentValue(api, 'sandbox/s/KEY')).value).toBe('three');

    const id = await secretId(tenant.tenant.id, 'sandbox', 's', 'KEY');
    const { rows } = await owner.query<{ version: number; erased: boolean }>(
      'select version, ciphertext is null as erased from coffer.secret_versions where secret_id = $1 order by 1',
      [id],
    );
    expect(rows).toEqual([
      { version: 1, erased: false },
      { version: 2, erased: true },
      { version: 3, erased: false },
    ]);
  });

  it('refuses to destroy the current version (409) or one that does not exist (404)', async () => {
    const { api } = await tenantCtx(t, root);
    await seed(api, 'sandbox/s/KEY', 'one');
    await seed(api, 'sandbox/s/KEY', 'two');
    expectError(await api.destroy('sandbox/s/KEY', 2), 409, 'conflict');
    expect((await currentValue(api, 'sandbox/s/KEY')).value).toBe('two');
    expectError(await api.destroy('sandbox/s/KEY', 9), 404, 'not_found');
    expectError(await api.destroy('sandbox/s/OTHER', 1), 404, 'not_found');
    expectError(await api.destroy('sandbox/s/KEY', 0), 400, 'validation_failed');
  });
});

describe('listing', () => {
  it('filters by kind, owner and name prefix, and leaves deleted secrets out', async () => {
    const { api } = await tenantCtx(t, root);
    const all = [
      'sandbox/sbx-1/STRIPE_KEY',
      'sandbox/sbx-1/STRIPE_WEBHOOK',
      'sandbox/sbx-1/DB_URL',
      'sandbox/sbx-2/STRIPE_KEY',
      'user/alice/STRIPE_KEY',
      'shared/billing/DB_URL',
      // `_` in a prefix is a literal, not a LIKE wildcard: STRIPE_ must not match this one.
      'shared/billing/STRIPEXKEY',
    ];
    for (const p of all) await seed(api, p, `value of ${p}`);
    await seed(api, 'sandbox/sbx-1/STRIPE_OLD', 'old');
    expectEmpty(await api.remove('sandbox/sbx-1/STRIPE_OLD'));

    const res = await api.list();
    const everything = expectOk(res, 200, SecretPage);
    expect(new Set(names(everything.items))).toEqual(new Set(all));
    expect(everything.nextCursor).toBeNull();
    expect(res.body).not.toContain('value of');

    const byKind = expectOk(await api.list({ kind: 'sandbox' }), 200, SecretPage);
    expect(new Set(names(byKind.items))).toEqual(new Set(all.filter((p) => p.startsWith('sandbox/'))));
    const byOwner = expectOk(await api.list({ owner: 'sbx-1' }), 200, SecretPage);
    expect(new Set(names(byOwner.items))).toEqual(
      new Set(['sandbox/sbx-1/STRIPE_KEY', 'sandbox/sbx-1/STRIPE_WEBHOOK', 'sandbox/sbx-1/DB_URL']),
    );
    const byPrefix = expectOk(await api.list({ prefix: 'STRIPE_' }), 200, SecretPage);
    expect(new Set(names(byPrefix.items))).toEqual(
      new Set([
        'sandbox/sbx-1/STRIPE_KEY',
        'sandbox/sbx-1/STRIPE_WEBHOOK',
        'sandbox/sbx-2/STRIPE_KEY',
        'user/alice/STRIPE_KEY',
      ]),
    );
    const combined = expectOk(await api.list({ kind: 'sandbox', owner: 'sbx-1', prefix: 'STRIPE_K' }), 200, SecretPage);
    expect(names(combined.items)).toEqual(['sandbox/sbx-1/STRIPE_KEY']);
    expect(expectOk(await api.list({ kind: 'shared', owner: 'sbx-1' }), 200, SecretPage).items).toEqual([]);
    expectError(await api.list({ prefix: 'STRIPE%' }), 400, 'validation_failed');
  });

  it('pages with a small limit: every item exactly once, in a stable order', async () => {
    const { api } = await tenantCtx(t, root);
    const created: string[] = [];
    for (let i = 1; i <= 7; i++) {
      const p = `sandbox/pager/ITEM_${i}`;
      await seed(api, p, `v${i}`);
      created.push(p);
    }
    const first = expectOk(await api.list({ limit: 2 }), 200, SecretPage);
    expect(first.items).toHaveLength(2);
    expect(first.nextCursor).not.toBeNull();
    const items = await listAll(api, { limit: 2 });
    expect(items).toHaveLength(7);
    expect(new Set(names(items))).toEqual(new Set(created));
    // The same listing in one page has the same order.
    expect(names(expectOk(await api.list({ limit: 100 }), 200, SecretPage).items)).toEqual(names(items));
    // limit equal to the count: one full page and no cursor.
    expect(expectOk(await api.list({ limit: 7 }), 200, SecretPage).nextCursor).toBeNull();
  });

  it('stays stable when secrets are created between page fetches', async () => {
    const { api } = await tenantCtx(t, root);
    const originals = ['B1', 'B2', 'B3', 'B4', 'B5', 'B6', 'B7'].map((n) => `shared/team/${n}`);
    for (const p of originals) await seed(api, p, 'v');
    const seen: string[] = [];
    let cursor: string | undefined;
    let inserted = 0;
    for (let pages = 0; pages < 50; pages++) {
      const page = expectOk(await api.list({ limit: 2, cursor }), 200, SecretPage);
      seen.push(...names(page.items));
      if (page.nextCursor === null) break;
      cursor = page.nextCursor;
      // New names on both sides of the cursor: A* sort before every original, C* after, B3x among them.
      inserted++;
      await seed(api, `shared/team/A${inserted}`, 'new');
      await seed(api, `shared/team/B3x${inserted}`, 'new');
      await seed(api, `shared/team/C${inserted}`, 'new');
    }
    expect(inserted).toBeGreaterThanOrEqual(3);
    expect(seen.filter((p) => originals.includes(p)).sort()).toEqual([...originals].sort());
    expect(new Set(seen).size).toBe(seen.length);
    // The order of what was seen is the server's order restricted to those items: no going backwards.
    const finalOrder = names(await listAll(api, { limit: 1000 }));
    expect(finalOrder.filter((p) => seen.includes(p))).toEqual(seen);
  });

  it('validates the listing query', async () => {
    const { api } = await tenantCtx(t, root);
    expectError(await api.list({ limit: 0 }), 400, 'validation_failed');
    expectError(await api.list({ limit: 1001 }), 400, 'validation_failed');
    expectOk(await api.list({ limit: 1000 }), 200, SecretPage);
    expectError(await api.list({ kind: 'secretz' }), 400, 'validation_failed');
    expectError(await api.list({ prefix: 'a/b' }), 400, 'validation_failed');
    expectError(await api.list({ cursor: 'not-a-real-cursor' }), 400, 'validation_failed');
    expectError(await api.list({ cursor: '!!' }), 400, 'validation_failed');
  });
});

describe('bundles', () => {
  it('reads every live secret of one owner, and nothing of other owners', async () => {
    const { api } = await tenantCtx(t, root);
    await seed(api, 'sandbox/sbx-9/A', 'alpha');
    await seed(api, 'sandbox/sbx-9/B', 'beta-1');
    await seed(api, 'sandbox/sbx-9/B', 'beta-2');
    await seed(api, 'sandbox/sbx-9/GONE', 'deleted');
    expectEmpty(await api.remove('sandbox/sbx-9/GONE'));
    await seed(api, 'sandbox/sbx-10/A', 'other owner');
    await seed(api, 'user/sbx-9/A', 'other kind');
    const bundle = expectOk(await api.bundle('sandbox', 'sbx-9'), 200, Bundle);
    expect(bundle).toEqual({ values: { A: 'alpha', B: 'beta-2' }, versions: { A: 1, B: 2 } });
    expect(expectOk(await api.bundle('shared', 'nobody'), 200, Bundle)).toEqual({ values: {}, versions: {} });
    expectError(await api.bundle('nope', 'sbx-9'), 400, 'validation_failed');
  });

  it('writes all or nothing: one bad compare-and-set among three changes none of them', async () => {
    const { api } = await tenantCtx(t, root);
    for (const n of ['A', 'B', 'C']) await seed(api, `sandbox/app/${n}`, `${n}-1`);
    const res = await api.writeBundle('sandbox', 'app', {
      set: { A: { value: 'A-2', ifVersion: 1 }, B: { value: 'B-2', ifVersion: 5 }, C: { value: 'C-2', ifVersion: 1 } },
    });
    const err = expectError(res, 409, 'conflict');
    expect(err.details).toHaveLength(1);
    expect(err.details?.[0]?.path).toBe('body.set.B');
    expect(err.details?.[0]?.message).toContain('current version is 1');
    for (const n of ['A', 'B', 'C'])
      expect(await currentValue(api, `sandbox/app/${n}`)).toEqual({ value: `${n}-1`, version: 1 });

    // Every failing name is named, creations included.
    const two = expectError(
      await api.writeBundle('sandbox', 'app', {
        set: { A: { value: 'x', ifVersion: 0 }, NEW: { value: 'x', ifVersion: 3 }, C: { value: 'C-2' } },
        delete: ['MISSING'],
      }),
      409,
      'conflict',
    );
    expect(two.details?.map((d) => d.path).sort()).toEqual(['body.delete.MISSING', 'body.set.A', 'body.set.NEW']);
    expect((await currentValue(api, 'sandbox/app/C')).version).toBe(1);
    expectError(await api.get('sandbox/app/NEW'), 404, 'not_found');
  });

  it('mixes sets, creations and deletes in one atomic write', async () => {
    const { api } = await tenantCtx(t, root);
    for (const n of ['A', 'B', 'C']) await seed(api, `sandbox/app/${n}`, `${n}-1`);
    const res = await api.writeBundle('sandbox', 'app', {
      set: { A: { value: 'A-2', ifVersion: 1 }, NEW: { value: 'N-1', ifVersion: 0 }, B: { value: 'B-2' } },
      delete: ['C'],
    });
    expect(expectOk(res, 200, BundleWriteResponse)).toEqual({ versions: { A: 2, NEW: 1, B: 2, C: null } });
    expect(res.body).not.toContain('A-2');
    expect(expectOk(await api.bundle('sandbox', 'app'), 200, Bundle)).toEqual({
      values: { A: 'A-2', B: 'B-2', NEW: 'N-1' },
      versions: { A: 2, B: 2, NEW: 1 },
    });
    expectError(await api.get('sandbox/app/C'), 404, 'not_found');
    // The deleted one is soft-deleted: restorable.
    expect(expectOk(await api.restore('sandbox/app/C'), 200, SecretMetadata).version).toBe(1);
  });

  it('refuses a whole bundle when one value fails its format (422), naming the rule, not the value', async () => {
    const { api } = await tenantCtx(t, root);
    expectOk(
      await api.put('sandbox/app/ID', { value: '0b5d8d0e-8c4e-4b4e-9e0a-4a8e2f6f3c11', format: 'uuid' }),
      201,
      SecretMetadata,
    );
    await seed(api, 'sandbox/app/PLAIN', 'p-1');
    const err = expectError(
      await api.writeBundle('sandbox', 'app', {
        set: {
          ID: { value: 'definitely-not-a-uuid' },
          PLAIN: { value: 'p-2' },
          HEXED: { value: 'xyz', format: 'hex' },
        },
      }),
      422,
      'unprocessable',
    );
    expect(err.details?.map((d) => d.path).sort()).toEqual(['body.set.HEXED.value', 'body.set.ID.value']);
    expect(err.details?.find((d) => d.path === 'body.set.ID.value')?.message).toMatch(/^uuid:/);
    expect(JSON.stringify(err)).not.toContain('definitely-not-a-uuid');
    expect((await currentValue(api, 'sandbox/app/PLAIN')).version).toBe(1);
    expectError(await api.get('sandbox/app/HEXED'), 404, 'not_found');
  });

  it('validates the bundle body', async () => {
    const { api } = await tenantCtx(t, root);
    await seed(api, 'sandbox/app/A', 'a');
    expectError(await api.writeBundle('sandbox', 'app', {}), 400, 'validation_failed');
    expectError(await api.writeBundle('sandbox', 'app', { set: {}, delete: [] }), 400, 'validation_failed');
    expectError(
      await api.writeBundle('sandbox', 'app', { set: { A: { value: 'x' } }, delete: ['A'] }),
      400,
      'validation_failed',
    );
    expectError(await api.writeBundle('sandbox', 'app', { set: { '1BAD': { value: 'x' } } }), 400, 'validation_failed');
    expectError(await api.writeBundle('sandbox', 'app', { delete: ['a/b'] }), 400, 'validation_failed');
    expectError(
      await api.writeBundle('sandbox', 'app', { set: { B: { value: 'x', format: { pattern: '(' } } } }),
      400,
      'validation_failed',
    );
    expect(await currentValue(api, 'sandbox/app/A')).toEqual({ value: 'a', version: 1 });
  });
});

describe('delete, restore, purge', () => {
  it('soft-deletes: gone from reads, lists, bundles and versions; writes conflict until restored', async () => {
    const { api } = await tenantCtx(t, root);
    await seed(api, 'sandbox/d/KEY', 'k-1');
    await seed(api, 'sandbox/d/KEY', 'k-2');
    await seed(api, 'sandbox/d/KEEP', 'keep');
    expectEmpty(await api.remove('sandbox/d/KEY'));

    expectError(await api.get('sandbox/d/KEY'), 404, 'not_found');
    expectError(await api.get('sandbox/d/KEY', 1), 404, 'not_found');
    expectError(await api.versions('sandbox/d/KEY'), 404, 'not_found');
    expect(names(expectOk(await api.list({ owner: 'd' }), 200, SecretPage).items)).toEqual(['sandbox/d/KEEP']);
    expect(expectOk(await api.bundle('sandbox', 'd'), 200, Bundle).versions).toEqual({ KEEP: 1 });
    const blocked = expectError(await api.put('sandbox/d/KEY', { value: 'k-3' }), 409, 'conflict');
    expect(blocked.message).toContain('deleted');
    expectError(await api.put('sandbox/d/KEY', { value: 'k-3', ifVersion: 0 }), 409, 'conflict');
    expectError(await api.writeBundle('sandbox', 'd', { set: { KEY: { value: 'k-3' } } }), 409, 'conflict');
    expectError(await api.destroy('sandbox/d/KEY', 1), 404, 'not_found');
    expectError(await api.remove('sandbox/d/KEY'), 404, 'not_found');

    const restored = expectOk(await api.restore('sandbox/d/KEY'), 200, SecretMetadata);
    expect(restored).toMatchObject({ name: 'KEY', version: 2 });
    expect(await currentValue(api, 'sandbox/d/KEY')).toEqual({ value: 'k-2', version: 2 });
    expect(expectOk(await api.get('sandbox/d/KEY', 1), 200, SecretWithValue).value).toBe('k-1');
    expect(expectOk(await api.put('sandbox/d/KEY', { value: 'k-3', ifVersion: 2 }), 200, SecretMetadata).version).toBe(
      3,
    );

    expectError(await api.restore('sandbox/d/KEY'), 409, 'conflict');
    expectError(await api.restore('sandbox/d/NEVER'), 404, 'not_found');
    expectError(await api.remove('sandbox/d/NEVER'), 404, 'not_found');
  });

  it('purges for good: rows and ciphertexts are erased and the name starts again at version 1', async () => {
    const { tenant, api } = await tenantCtx(t, root);
    await seed(api, 'user/bob/KEY', 'b-1');
    await seed(api, 'user/bob/KEY', 'b-2');
    const id = await secretId(tenant.tenant.id, 'user', 'bob', 'KEY');
    expect(id).toBeDefined();
    expectEmpty(await api.remove('user/bob/KEY', true));
    const { rows } = await owner.query<{ n: string }>(
      'select count(*) as n from coffer.secret_versions where secret_id = $1',
      [id],
    );
    expect(rows[0]?.n).toBe('0');
    expect(await secretId(tenant.tenant.id, 'user', 'bob', 'KEY')).toBeUndefined();
    expectError(await api.get('user/bob/KEY'), 404, 'not_found');
    expectError(await api.restore('user/bob/KEY'), 404, 'not_found');
    expectError(await api.remove('user/bob/KEY', true), 404, 'not_found');
    expect(expectOk(await api.put('user/bob/KEY', { value: 'fresh', ifVersion: 0 }), 201, SecretMetadata).version).toBe(
      1,
    );

    // A soft-deleted secret can be purged too.
    await seed(api, 'user/bob/OTHER', 'o');
    expectEmpty(await api.remove('user/bob/OTHER'));
    expectEmpty(await api.remove('user/bob/OTHER', true));
    expectError(await api.restore('user/bob/OTHER'), 404, 'not_found');
    expectError(await api.send('DELETE', '/v1/secrets/user/bob/KEY?purge=yes'), 400, 'validation_failed');
    expectEmpty(await api.send('DELETE', '/v1/secrets/user/bob/KEY?purge=false'));
    expect(expectOk(await api.restore('user/bob/KEY'), 200, SecretMetadata).version).toBe(1);
    expectEmpty(await api.remove('user/bob/KEY'));
    expectError(await api.get('user/bob/KEY'), 404, 'not_found');
  });

  describe('with the recovery window closed (COFFER_RECOVERY_DAYS=0)', () => {
    let closed: TestApp;
    beforeAll(async () => {
      closed = await createTestApp({ COFFER_RECOVERY_DAYS: '0' });
    });
    afterAll(() => closed.close());

    it('restore answers 410 gone and a PUT recreates the secret fresh at version 1', async () => {
      const tenant = await createTenant(closed.app, await rootToken(closed.app));
      const api = secretsApi(closed.app, tenant.adminToken);
      await seed(api, 'sandbox/w/KEY', 'old-1');
      await seed(api, 'sandbox/w/KEY', 'old-2');
      expectEmpty(await api.remove('sandbox/w/KEY'));
      expectError(await api.restore('sandbox/w/KEY'), 410, 'gone');
      expectError(await api.get('sandbox/w/KEY'), 404, 'not_found');
      expect(await secretId(tenant.tenant.id, 'sandbox', 'w', 'KEY')).toBeUndefined();

      await seed(api, 'sandbox/w/AGAIN', 'again-1');
      expectEmpty(await api.remove('sandbox/w/AGAIN'));
      const recreated = expectOk(await api.put('sandbox/w/AGAIN', { value: 'new', ifVersion: 0 }), 201, SecretMetadata);
      expect(recreated.version).toBe(1);
      expect(await currentValue(api, 'sandbox/w/AGAIN')).toEqual({ value: 'new', version: 1 });
      expect(expectOk(await api.versions('sandbox/w/AGAIN'), 200, SecretVersions).items).toHaveLength(1);

      // A bundle write over a deleted name past its window also starts fresh.
      await seed(api, 'sandbox/w/BUNDLED', 'b-1');
      await seed(api, 'sandbox/w/BUNDLED', 'b-2');
      expectEmpty(await api.remove('sandbox/w/BUNDLED'));
      expect(
        expectOk(
          await api.writeBundle('sandbox', 'w', { set: { BUNDLED: { value: 'b-new', ifVersion: 0 } } }),
          200,
          BundleWriteResponse,
        ),
      ).toEqual({ versions: { BUNDLED: 1 } });
    });
  });
});

describe('expiry', () => {
  it('an expired secret reads as 410 expired and leaves the bundle', async () => {
    const { tenant, api } = await tenantCtx(t, root);
    const soon = new Date(Date.now() + 60_000).toISOString();
    expectOk(await api.put('sandbox/e/TEMP', { value: 'temporary', expiresAt: soon }), 201, SecretMetadata);
    await seed(api, 'sandbox/e/STAYS', 'stays');
    expect((await currentValue(api, 'sandbox/e/TEMP')).value).toBe('temporary');
    expect(Object.keys(expectOk(await api.bundle('sandbox', 'e'), 200, Bundle).values).sort()).toEqual([
      'STAYS',
      'TEMP',
    ]);

    await owner.query(
      "update coffer.secrets set expires_at = now() - interval '1 second' where tenant_id = $1 and name = 'TEMP'",
      [tenant.tenant.id],
    );
    const res = await api.get('sandbox/e/TEMP');
    expectError(res, 410, 'expired');
    expect(res.body).not.toContain('temporary');
    expectError(await api.get('sandbox/e/TEMP', 1), 410, 'expired');
    expect(expectOk(await api.bundle('sandbox', 'e'), 200, Bundle)).toEqual({
      values: { STAYS: 'stays' },
      versions: { STAYS: 1 },
    });
  });

  it('expires on its own once expiresAt passes', async () => {
    const { api } = await tenantCtx(t, root);
    const at = new Date(Date.now() + 1500).toISOString();
    expectOk(await api.put('sandbox/e/SHORT', { value: 'short-lived', expiresAt: at }), 201, SecretMetadata);
    expect((await currentValue(api, 'sandbox/e/SHORT')).value).toBe('short-lived');
    await new Promise((resolve) => setTimeout(resolve, Date.parse(at) - Date.now() + 100));
    expectError(await api.get('sandbox/e/SHORT'), 410, 'expired');
    expect(expectOk(await api.bundle('sandbox', 'e'), 200, Bundle)).toEqual({ values: {}, versions: {} });
  });
});
