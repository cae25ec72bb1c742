import {
  Bundle,
  type Capability,
  POLICY_PATH_MAX_STARS,
  type Policy,
  SecretMetadata,
  SecretPage,
  SecretWithValue,
} from '@coffer/contracts';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, createIdentity, createTenant, rootToken, type TestTenant } from '../support/factories.ts';
import {
  expectError,
  expectOk,
  ownerClient,
  type Response,
  type SecretsApi,
  secretsApi,
  spath,
} from '../support/secrets.ts';
import { tenantRowsDigest } from '../support/security.ts';
import { createTestApp, type TestApp } from '../support/test-app.ts';

/**
 * Path policies through the API (the glob rules themselves are unit-tested in apps/api/src/auth/policy.test.ts;
 * test/secrets/secrets-security.test.ts covers a narrower policy taking read away, and bundle and list filtering by
 * read and list). Here: what `*`, `**`, `?` and literal characters reach over HTTP, most-specific-wins taking away
 * write, delete and read in favour of a broader grant, and which capability each secret action needs.
 */

let t: TestApp;
let root: string;
let owner: pg.Client;
beforeAll(async () => {
  t = await createTestApp();
  root = await rootToken(t.app);
  owner = await ownerClient();
});
afterAll(async () => {
  await owner?.end();
  await t?.close();
});

const valueAt = (path: string) => `value of ${path}`;

/** A fresh tenant holding each of `paths` (value: "value of <path>"), and its admin's API. */
async function tenantWith(paths: string[]): Promise<{ tenant: TestTenant; admin: SecretsApi }> {
  const tenant = await createTenant(t.app, root);
  const admin = secretsApi(t.app, tenant.adminToken);
  const byOwner = new Map<string, Record<string, { value: string }>>();
  for (const p of paths) {
    const [kind, owner, name] = p.split('/') as [string, string, string];
    const set = byOwner.get(`${kind}/${owner}`) ?? {};
    set[name] = { value: valueAt(p) };
    byOwner.set(`${kind}/${owner}`, set);
  }
  for (const [ko, set] of byOwner) {
    const [kind, owner] = ko.split('/') as [string, string];
    const res = await admin.writeBundle(kind, owner, { set });
    expect(res.statusCode, res.body).toBe(200);
  }
  return { tenant, admin };
}

async function service(tenant: TestTenant, policies: Policy[]): Promise<SecretsApi> {
  const svc = await createIdentity(t.app, tenant.adminToken, { role: 'service', policies });
  return secretsApi(t.app, svc.token);
}

const pol = (path: string, ...capabilities: Capability[]): Policy => ({ path, capabilities });

/** Which of `paths` the service may read (GET 200 with the right value) and which it may not (403). */
async function readable(api: SecretsApi, paths: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const p of paths) {
    const res = await api.get(p);
    if (res.statusCode === 200) {
      expect(SecretWithValue.parse(res.json()).value).toBe(valueAt(p));
      out.push(p);
    } else {
      expectError(res, 403, 'forbidden');
      expect(res.body).not.toContain(valueAt(p));
    }
  }
  return out;
}

async function listed(api: SecretsApi): Promise<string[]> {
  const page = expectOk(await api.list({ limit: 1000 }), 200, SecretPage);
  return page.items.map((i) => spath(i.kind, i.owner, i.name)).sort();
}

describe('globs over HTTP', () => {
  const PATHS = [
    'sandbox/app/KEY',
    'sandbox/app/OTHER',
    'sandbox/other/KEY',
    'sandbox/sbx-4/KEY',
    'sandbox/sbx-42/KEY',
    'shared/a.b/KEY',
    'shared/aXb/KEY',
    'user/alice/KEY',
    'user/alice/key',
  ];
  let tenant: TestTenant;
  beforeAll(async () => {
    ({ tenant } = await tenantWith(PATHS));
  });

  it('`*` stays within one segment: sandbox/* reaches no secret, sandbox/*/KEY reaches KEY under every owner', async () => {
    const twoSegments = await service(tenant, [pol('sandbox/*', 'read', 'list')]);
    expect(await readable(twoSegments, PATHS)).toEqual([]);
    expect(await listed(twoSegments)).toEqual([]);
    expect(expectOk(await twoSegments.bundle('sandbox', 'app'), 200, Bundle)).toEqual({ values: {}, versions: {} });

    const anyOwner = await service(tenant, [pol('sandbox/*/KEY', 'read', 'list')]);
    const expected = ['sandbox/app/KEY', 'sandbox/other/KEY', 'sandbox/sbx-4/KEY', 'sandbox/sbx-42/KEY'];
    expect(await readable(anyOwner, PATHS)).toEqual(expected);
    expect(await listed(anyOwner)).toEqual(expected.sort());
  });

  it('`**` crosses segments: sandbox/** reaches every sandbox secret, **/KEY every KEY of every kind', async () => {
    const sandboxTree = await service(tenant, [pol('sandbox/**', 'read')]);
    expect(await readable(sandboxTree, PATHS)).toEqual(PATHS.filter((p) => p.startsWith('sandbox/')));

    const everyKey = await service(tenant, [pol('**/KEY', 'read')]);
    expect(await readable(everyKey, PATHS)).toEqual(PATHS.filter((p) => p.endsWith('/KEY')));
  });

  it('`?` is exactly one character: sandbox/sbx-?/KEY reaches sbx-4, not sbx-42', async () => {
    const api = await service(tenant, [pol('sandbox/sbx-?/KEY', 'read')]);
    expect(await readable(api, PATHS)).toEqual(['sandbox/sbx-4/KEY']);
  });

  it('a dot is a literal dot, and names are case-sensitive', async () => {
    const dotted = await service(tenant, [pol('shared/a.b/KEY', 'read')]);
    expect(await readable(dotted, PATHS)).toEqual(['shared/a.b/KEY']);
    const lower = await service(tenant, [pol('user/alice/key', 'read')]);
    expect(await readable(lower, PATHS)).toEqual(['user/alice/key']);
  });

  it('an encoded slash cannot smuggle a path past `*` (the request is malformed, never served)', async () => {
    const api = await service(tenant, [pol('sandbox/*/KEY', 'read'), pol('sandbox/**', 'read')]);
    for (const url of [
      '/v1/secrets/sandbox/app%2Fx/KEY',
      '/v1/secrets/sandbox/app/KEY%2F..',
      '/v1/bundles/sandbox/a%2Fb',
    ]) {
      const res = await api.send('GET', url);
      expectError(res, 400, 'validation_failed');
      expect(res.body).not.toContain('value of');
    }
  });
});

describe('policy globs are bounded at write', () => {
  it('ReDoS: a policy path with more stars than the bound is refused at write with 400 validation_failed', async () => {
    const tenant = await createTenant(t.app, root);
    const tooMany = `sandbox/x/${'*a'.repeat(POLICY_PATH_MAX_STARS)}*b`;
    const create = await t.app.inject({
      method: 'POST',
      url: '/v1/identities',
      headers: bearer(tenant.adminToken),
      payload: { name: 'greedy', role: 'service', policies: [pol(tooMany, 'read')] },
    });
    const err = expectError(create, 400, 'validation_failed');
    expect(err.details).toContainEqual({
      path: 'body.policies.0.path',
      message: `must hold at most ${POLICY_PATH_MAX_STARS} * characters`,
    });

    const svc = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      policies: [pol('sandbox/x/*', 'read')],
    });
    const update = await t.app.inject({
      method: 'PATCH',
      url: `/v1/identities/${svc.identity.id}`,
      headers: bearer(tenant.adminToken),
      payload: { policies: [pol(tooMany, 'read')] },
    });
    expectError(update, 400, 'validation_failed');

    // At the bound it is accepted, and matched like any glob over GET, list and bundle.
    const atBound = `sandbox/x/${'*a'.repeat(POLICY_PATH_MAX_STARS - 1)}*b`;
    const admin = secretsApi(t.app, tenant.adminToken);
    expect(
      (await admin.writeBundle('sandbox', 'x', { set: { aaaaaaab: { value: 'v1' }, aaaa: { value: 'v2' } } }))
        .statusCode,
    ).toBe(200);
    const api = await service(tenant, [pol(atBound, 'read', 'list')]);
    expect((await api.get('sandbox/x/aaaaaaab')).statusCode).toBe(200);
    expectError(await api.get('sandbox/x/aaaa'), 403, 'forbidden');
    expect(expectOk(await api.bundle('sandbox', 'x'), 200, Bundle).values).toEqual({ aaaaaaab: 'v1' });
    expect(expectOk(await api.list({ kind: 'sandbox' }), 200, SecretPage).items.map((i) => i.name)).toEqual([
      'aaaaaaab',
    ]);
  });
});

describe('most specific wins, also when it takes a capability away', () => {
  it('a literal name without write or delete keeps a service from changing it, while sandbox/app/* lets it change the rest', async () => {
    const { tenant, admin } = await tenantWith(['sandbox/app/LOCKED', 'sandbox/app/FREE']);
    const api = await service(tenant, [
      pol('sandbox/app/*', 'read', 'list', 'write', 'delete', 'rotate'),
      pol('sandbox/app/LOCKED', 'read'),
    ]);
    expectError(await api.put('sandbox/app/LOCKED', { value: 'x' }), 403, 'forbidden');
    expectError(await api.send('PATCH', '/v1/secrets/sandbox/app/LOCKED', { description: 'x' }), 403, 'forbidden');
    expectError(await api.send('POST', '/v1/secrets/sandbox/app/LOCKED/rotate', { value: 'x' }), 403, 'forbidden');
    expectError(await api.remove('sandbox/app/LOCKED'), 403, 'forbidden');
    const bundleErr = expectError(
      await api.writeBundle('sandbox', 'app', { set: { LOCKED: { value: 'x' }, FREE: { value: 'y' } } }),
      403,
      'forbidden',
    );
    expect(bundleErr.details?.map((d) => d.path)).toEqual(['body.set.LOCKED']);
    expect(expectOk(await api.get('sandbox/app/LOCKED'), 200, SecretWithValue).value).toBe(
      valueAt('sandbox/app/LOCKED'),
    );
    // The literal policy grants no list: LOCKED is missing from the list though sandbox/app/* would list it.
    expect(await listed(api)).toEqual(['sandbox/app/FREE']);
    // Nothing of LOCKED changed; FREE is writable.
    expect(expectOk(await admin.get('sandbox/app/LOCKED'), 200, SecretWithValue).version).toBe(1);
    expect(expectOk(await api.put('sandbox/app/FREE', { value: 'y' }), 200, SecretMetadata).version).toBe(2);
  });

  it('`*` beats `**`: sandbox/app/* with list only takes read away that ** grants; other owners stay readable', async () => {
    const { tenant } = await tenantWith(['sandbox/app/KEY', 'sandbox/web/KEY']);
    const api = await service(tenant, [pol('**', 'read'), pol('sandbox/app/*', 'list')]);
    expect(await readable(api, ['sandbox/app/KEY', 'sandbox/web/KEY'])).toEqual(['sandbox/web/KEY']);
    expect(expectOk(await api.bundle('sandbox', 'app'), 200, Bundle)).toEqual({ values: {}, versions: {} });
    expect(expectOk(await api.bundle('sandbox', 'web'), 200, Bundle).values).toEqual({
      KEY: valueAt('sandbox/web/KEY'),
    });
    expect(await listed(api)).toEqual(['sandbox/app/KEY']);
  });

  it('a partial glob beats `*` in a bundle: STRIPE_* without read hides every STRIPE_ name, the rest is served', async () => {
    const { tenant } = await tenantWith([
      'shared/payments/STRIPE_SECRET_KEY',
      'shared/payments/STRIPE_WEBHOOK',
      'shared/payments/PAYPAL_KEY',
    ]);
    const api = await service(tenant, [pol('shared/payments/*', 'read'), pol('shared/payments/STRIPE_*', 'list')]);
    const bundle = expectOk(await api.bundle('shared', 'payments'), 200, Bundle);
    expect(bundle.values).toEqual({ PAYPAL_KEY: valueAt('shared/payments/PAYPAL_KEY') });
    expect(Object.keys(bundle.versions)).toEqual(['PAYPAL_KEY']);
  });

  it('equally specific policies grant the union of their capabilities', async () => {
    const { tenant } = await tenantWith(['shared/ab/KEY']);
    const api = await service(tenant, [pol('shared/a*/KEY', 'read'), pol('shared/*b/KEY', 'list')]);
    expect(await readable(api, ['shared/ab/KEY'])).toEqual(['shared/ab/KEY']);
    expect(await listed(api)).toEqual(['shared/ab/KEY']);
  });

  it('a list filtered by a glob over owners, combined with the kind and owner filters of the query', async () => {
    const { tenant } = await tenantWith([
      'user/alice/OPENAI_API_KEY',
      'user/alice/GITHUB_TOKEN',
      'user/bob/OPENAI_API_KEY',
      'sandbox/alice/OPENAI_API_KEY',
    ]);
    const api = await service(tenant, [pol('user/*/OPENAI_API_KEY', 'read', 'list')]);
    expect(await listed(api)).toEqual(['user/alice/OPENAI_API_KEY', 'user/bob/OPENAI_API_KEY']);
    const alice = expectOk(await api.list({ kind: 'user', owner: 'alice' }), 200, SecretPage);
    expect(alice.items.map((i) => i.name)).toEqual(['OPENAI_API_KEY']);
    expect(expectOk(await api.list({ kind: 'sandbox' }), 200, SecretPage).items).toEqual([]);
    expect(expectOk(await api.bundle('user', 'alice'), 200, Bundle).values).toEqual({
      OPENAI_API_KEY: valueAt('user/alice/OPENAI_API_KEY'),
    });
  });
});

describe('each secret action needs its own capability', () => {
  const ALL: Capability[] = ['read', 'list', 'write', 'delete', 'rotate'];
  type Refusal = 'forbidden' | 'filtered';
  interface CapCase {
    action: string;
    /** Any one of these grants the action. */
    needs: Capability[];
    /** What a refusal looks like: 403, or a list or bundle that leaves the name out. */
    refusal: Refusal;
    call: (api: SecretsApi, name: string) => Promise<Response>;
    status: number;
    /** Whether an allowed answer shows the name. */
    shows?: (res: Response, name: string) => boolean;
  }
  const CASES: CapCase[] = [
    {
      action: 'secrets.read',
      needs: ['read'],
      refusal: 'forbidden',
      call: (a, n) => a.get(`sandbox/cap/${n}`),
      status: 200,
    },
    {
      action: 'secrets.versions',
      needs: ['read', 'list'],
      refusal: 'forbidden',
      call: (a, n) => a.versions(`sandbox/cap/${n}`),
      status: 200,
    },
    {
      action: 'secrets.list',
      needs: ['list'],
      refusal: 'filtered',
      call: (a) => a.list({ kind: 'sandbox', owner: 'cap', limit: 1000 }),
      status: 200,
      shows: (res, n) => SecretPage.parse(res.json()).items.some((i) => i.name === n),
    },
    {
      action: 'bundles.read',
      needs: ['read'],
      refusal: 'filtered',
      call: (a) => a.bundle('sandbox', 'cap'),
      status: 200,
      shows: (res, n) => n in Bundle.parse(res.json()).values,
    },
    {
      action: 'secrets.write',
      needs: ['write'],
      refusal: 'forbidden',
      call: (a, n) => a.put(`sandbox/cap/${n}`, { value: 'new' }),
      status: 200,
    },
    {
      action: 'secrets.update',
      needs: ['write'],
      refusal: 'forbidden',
      call: (a, n) => a.send('PATCH', `/v1/secrets/sandbox/cap/${n}`, { description: 'new' }),
      status: 200,
    },
    {
      action: 'bundles.write (set)',
      needs: ['write'],
      refusal: 'forbidden',
      call: (a, n) => a.writeBundle('sandbox', 'cap', { set: { [n]: { value: 'new' } } }),
      status: 200,
    },
    {
      action: 'bundles.write (delete)',
      needs: ['delete'],
      refusal: 'forbidden',
      call: (a, n) => a.writeBundle('sandbox', 'cap', { delete: [n] }),
      status: 200,
    },
    {
      action: 'secrets.delete',
      needs: ['delete'],
      refusal: 'forbidden',
      call: (a, n) => a.remove(`sandbox/cap/${n}`),
      status: 204,
    },
    {
      action: 'secrets.restore',
      needs: ['delete'],
      refusal: 'forbidden',
      call: (a, n) => a.restore(`sandbox/cap/${n}`),
      status: 200,
    },
    {
      action: 'secrets.destroy',
      needs: ['delete'],
      refusal: 'forbidden',
      call: (a, n) => a.destroy(`sandbox/cap/${n}`, 1),
      status: 204,
    },
    {
      action: 'secrets.rotate',
      needs: ['rotate'],
      refusal: 'forbidden',
      call: (a, n) => a.send('POST', `/v1/secrets/sandbox/cap/${n}/rotate`, { value: 'rotated' }),
      status: 200,
    },
  ];

  let tenant: TestTenant;
  let admin: SecretsApi;
  const services = new Map<string, SecretsApi>();
  const serviceWith = (caps: Capability[]): SecretsApi => {
    const api = services.get([...caps].sort().join(','));
    if (!api) throw new Error(`no service with ${caps.join(',')}`);
    return api;
  };
  const nameOf = (c: CapCase) => `C_${c.action.replace(/[^a-z]+/g, '_').toUpperCase()}`;

  beforeAll(async () => {
    // Every secret has two versions (destroy needs a non-current one); the restore target starts soft-deleted.
    ({ tenant, admin } = await tenantWith(CASES.map((c) => `sandbox/cap/${nameOf(c)}`)));
    for (const c of CASES) {
      const res = await admin.put(`sandbox/cap/${nameOf(c)}`, { value: 'second' });
      expect(res.statusCode).toBe(200);
    }
    const restore = CASES.find((c) => c.action === 'secrets.restore') as CapCase;
    expect((await admin.remove(`sandbox/cap/${nameOf(restore)}`)).statusCode).toBe(204);
    const sets = new Set<string>();
    for (const c of CASES) {
      sets.add(
        ALL.filter((x) => !c.needs.includes(x))
          .sort()
          .join(','),
      );
      sets.add([c.needs[0] as Capability].join(','));
    }
    await Promise.all(
      [...sets].map(async (s) => {
        services.set(s, await service(tenant, [pol('sandbox/cap/*', ...(s.split(',') as Capability[]))]));
      }),
    );
  });

  it.each(CASES.map((c) => [c.action, c] as const))(
    '%s: refused with every other capability, allowed with only the one it needs',
    async (_action, c) => {
      const name = nameOf(c);
      const before = await tenantRowsDigest(owner, tenant.tenant.id);
      const refused = await c.call(serviceWith(ALL.filter((x) => !c.needs.includes(x))), name);
      if (c.refusal === 'forbidden') {
        expectError(refused, 403, 'forbidden');
      } else {
        expect(refused.statusCode).toBe(c.status);
        expect(c.shows?.(refused, name)).toBe(false);
      }
      // The refusal changed nothing.
      expect(await tenantRowsDigest(owner, tenant.tenant.id)).toEqual(before);

      const allowed = await c.call(serviceWith([c.needs[0] as Capability]), name);
      expect(allowed.statusCode, allowed.body).toBe(c.status);
      if (c.shows) expect(c.shows(allowed, name)).toBe(true);
    },
  );
});
