import { randomUUID } from 'node:crypto';
import {
  buildPath,
  type CreateIdentityResponse,
  type CreateTenantResponse,
  type ErrorEnvelope,
  type HttpMethod,
  type Identity,
  type IdentityPage,
  type RouteDef,
  routes,
  type TenantPage,
  type WhoAmI,
} from '@coffer/contracts';
import type { LightMyRequestResponse } from 'fastify';
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { bearer, createIdentity, createTenant, login, rootToken, uniqueSlug } from '../support/factories.ts';
import { ownerSuite } from '../support/suite.ts';
import type { TestApp } from '../support/test-app.ts';

let t: TestApp;
let owner: pg.Client;
ownerSuite((s) => {
  ({ t, owner } = s);
});

function call(
  method: HttpMethod,
  url: string,
  token: string | null,
  payload?: Record<string, unknown>,
): Promise<LightMyRequestResponse> {
  return t.app.inject({ method, url, headers: token ? bearer(token) : {}, ...(payload ? { payload } : {}) });
}

function expectError(res: LightMyRequestResponse, status: number, code: string): ErrorEnvelope['error'] {
  expect(res.statusCode, res.body).toBe(status);
  const body = res.json() as ErrorEnvelope;
  expect(body.error.code).toBe(code);
  return body.error;
}

const uuid = (): string => randomUUID();

describe('tenants (platform admin)', () => {
  it('creates a tenant with its first admin, whose credentials log in', async () => {
    const root = await rootToken(t.app);
    const slug = uniqueSlug('acme');
    const res = await call('POST', '/v1/tenants', root, { slug, name: '  Acme Corp  ' });
    expect(res.statusCode).toBe(201);
    const body = res.json() as CreateTenantResponse;
    expect(body.tenant).toMatchObject({ slug, name: 'Acme Corp' });
    expect(body.admin.clientId).toMatch(/^coffer_ci_/);
    expect(body.admin.clientSecret).toMatch(/^coffer_cs_/);

    const adminToken = await login(t.app, body.admin.clientId, body.admin.clientSecret);
    const me = (await call('GET', '/v1/auth/whoami', adminToken)).json() as WhoAmI;
    expect(me).toMatchObject({ tenantId: body.tenant.id, role: 'admin', clientId: body.admin.clientId });

    // Shown once: the tenant list never carries credentials, and the database keeps only a slow hash.
    const list = await call('GET', '/v1/tenants?limit=1000', root);
    expect(list.body).not.toContain(body.admin.clientSecret);
    const { rows } = await owner.query<{ secret_hash: string }>(
      'select secret_hash from coffer.identities where client_id = $1',
      [body.admin.clientId],
    );
    expect(rows[0]?.secret_hash).toMatch(/^scrypt\$/);
    expect(rows[0]?.secret_hash).not.toContain(body.admin.clientSecret);
  });

  it('refuses a duplicate slug with 409 conflict and leaves nothing half-made', async () => {
    const root = await rootToken(t.app);
    const slug = uniqueSlug('dup');
    expect((await call('POST', '/v1/tenants', root, { slug, name: 'First' })).statusCode).toBe(201);
    expectError(await call('POST', '/v1/tenants', root, { slug, name: 'Second' }), 409, 'conflict');
    const { rows } = await owner.query<{ n: number }>('select count(*)::int as n from coffer.tenants where slug = $1', [
      slug,
    ]);
    expect(rows[0]?.n).toBe(1);
  });

  it.each([
    ['upper case', 'Acme'],
    ['one character', 'a'],
    ['a leading dash', '-acme'],
    ['a slash', 'acme/evil'],
    ['64 characters', 'a'.repeat(64)],
  ])('refuses a slug with %s: 400 validation_failed with details', async (_name, slug) => {
    const root = await rootToken(t.app);
    const err = expectError(await call('POST', '/v1/tenants', root, { slug, name: 'X' }), 400, 'validation_failed');
    expect(err.details?.map((d) => d.path)).toContain('body.slug');
  });

  it('pages through tenants with limit and cursor: own tenants in creation order, no duplicates', async () => {
    const root = await rootToken(t.app);
    const mine: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await call('POST', '/v1/tenants', root, { slug: uniqueSlug('page'), name: `Page ${i}` });
      mine.push((res.json() as CreateTenantResponse).tenant.id);
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const url: string = `/v1/tenants?limit=1${cursor ? `&cursor=${cursor}` : ''}`;
      const res = await call('GET', url, root);
      expect(res.statusCode).toBe(200);
      const page = res.json() as TenantPage;
      expect(page.items.length).toBeLessThanOrEqual(1);
      seen.push(...page.items.map((i) => i.id));
      cursor = page.nextCursor;
      pages++;
    } while (cursor !== null && pages < 10_000);
    expect(cursor).toBeNull();
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen.filter((id) => mine.includes(id))).toEqual(mine);
    expect(seen).not.toContain('00000000-0000-0000-0000-000000000000');
  });

  it('refuses a cursor it did not issue', async () => {
    const root = await rootToken(t.app);
    const forged = Buffer.from(JSON.stringify({ id: "x' or 1=1 --" })).toString('base64url');
    expectError(await call('GET', `/v1/tenants?cursor=${forged}`, root), 400, 'validation_failed');
    expectError(await call('GET', '/v1/tenants?limit=0', root), 400, 'validation_failed');
    expectError(await call('GET', '/v1/tenants?limit=1001', root), 400, 'validation_failed');
  });

  it('a tenant admin may not create or list tenants (403)', async () => {
    const tenant = await createTenant(t.app);
    expectError(
      await call('POST', '/v1/tenants', tenant.adminToken, { slug: uniqueSlug(), name: 'X' }),
      403,
      'forbidden',
    );
    expectError(await call('GET', '/v1/tenants', tenant.adminToken), 403, 'forbidden');
  });

  it('the platform admin may not list, read or manage identities (403)', async () => {
    const root = await rootToken(t.app);
    const tenant = await createTenant(t.app, root);
    const adminId = ((await call('GET', '/v1/auth/whoami', tenant.adminToken)).json() as WhoAmI).identityId;
    for (const [method, url, payload] of identityRequests(adminId)) {
      expectError(await call(method, url, root, payload), 403, 'forbidden');
    }
  });
});

/** One valid request per identities route, aimed at `id`: what would succeed for a tenant admin. */
function identityRequests(id: string): [HttpMethod, string, Record<string, unknown> | undefined][] {
  return [
    ['POST', '/v1/identities', { name: 'sneaky', role: 'admin' }],
    ['GET', '/v1/identities', undefined],
    ['GET', `/v1/identities/${id}`, undefined],
    ['PATCH', `/v1/identities/${id}`, { name: 'renamed' }],
    ['DELETE', `/v1/identities/${id}`, undefined],
    ['POST', `/v1/identities/${id}/secret`, undefined],
  ];
}

describe('identities (tenant admin)', () => {
  it('creates a service identity with policies, reads and lists it', async () => {
    const tenant = await createTenant(t.app);
    const policies = [
      { path: 'sandbox/sbx-42/*', capabilities: ['read', 'list'] },
      { path: 'shared/**', capabilities: ['read'] },
    ];
    const res = await call('POST', '/v1/identities', tenant.adminToken, {
      name: 'billing-api',
      role: 'service',
      policies,
      tokenTtlSeconds: 300,
    });
    expect(res.statusCode).toBe(201);
    const created = res.json() as CreateIdentityResponse;
    expect(created.identity).toMatchObject({
      tenantId: tenant.tenant.id,
      name: 'billing-api',
      role: 'service',
      policies,
      tokenTtlSeconds: 300,
      disabled: false,
    });
    expect(created.clientSecret).toMatch(/^coffer_cs_/);

    const got = await call('GET', `/v1/identities/${created.identity.id}`, tenant.adminToken);
    expect(got.statusCode).toBe(200);
    expect(got.json()).toEqual(created.identity);
    expect(got.body).not.toContain(created.clientSecret);

    const list = (await call('GET', '/v1/identities', tenant.adminToken)).json() as IdentityPage;
    expect(list.items.map((i) => i.id)).toContain(created.identity.id);
    expect(list.items.every((i) => i.tenantId === tenant.tenant.id)).toBe(true);
    expect(list.items).toHaveLength(2); // the first admin and the service
    expect(list.nextCursor).toBeNull();
  });

  it('pages through identities with limit and cursor', async () => {
    const tenant = await createTenant(t.app);
    for (const role of ['service', 'auditor', 'admin'] as const) {
      const res = await call('POST', '/v1/identities', tenant.adminToken, { name: `p-${role}`, role });
      expect(res.statusCode).toBe(201);
    }
    const all = ((await call('GET', '/v1/identities?limit=100', tenant.adminToken)).json() as IdentityPage).items;
    expect(all).toHaveLength(4);
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const url: string = `/v1/identities?limit=1${cursor ? `&cursor=${cursor}` : ''}`;
      const page = (await call('GET', url, tenant.adminToken)).json() as IdentityPage;
      expect(page.items).toHaveLength(1);
      seen.push(...page.items.map((i) => i.id));
      cursor = page.nextCursor;
      pages++;
    } while (cursor !== null && pages < 10);
    expect(pages).toBe(4);
    expect(seen).toEqual(all.map((i) => i.id));
    expect([...seen].sort()).toEqual(seen);
  });

  it('updates name, policies, disabled and tokenTtlSeconds', async () => {
    const tenant = await createTenant(t.app);
    const svc = await createIdentity(t.app, tenant.adminToken, { role: 'service' });
    const url = `/v1/identities/${svc.identity.id}`;

    const policies = [{ path: 'user/u-7/db-password', capabilities: ['read', 'rotate'] }];
    const res = await call('PATCH', url, tenant.adminToken, { name: 'renamed', policies, tokenTtlSeconds: 600 });
    expect(res.statusCode).toBe(200);
    const updated = res.json() as Identity;
    expect(updated).toMatchObject({ name: 'renamed', policies, tokenTtlSeconds: 600, disabled: false });
    expect(Date.parse(updated.updatedAt)).toBeGreaterThanOrEqual(Date.parse(svc.identity.updatedAt));
    expect(updated.createdAt).toBe(svc.identity.createdAt);

    // The identity sees its new policies on its next request, with the token it already had.
    expect(((await call('GET', '/v1/auth/whoami', svc.token)).json() as WhoAmI).policies).toEqual(policies);

    const reset = (await call('PATCH', url, tenant.adminToken, { tokenTtlSeconds: null, policies: [] })).json();
    expect(reset).toMatchObject({ tokenTtlSeconds: null, policies: [], name: 'renamed' });

    expect(((await call('PATCH', url, tenant.adminToken, { disabled: true })).json() as Identity).disabled).toBe(true);
    expect(((await call('GET', url, tenant.adminToken)).json() as Identity).disabled).toBe(true);
    expect(((await call('PATCH', url, tenant.adminToken, { disabled: false })).json() as Identity).disabled).toBe(
      false,
    );
  });

  it('refuses an empty or malformed patch', async () => {
    const tenant = await createTenant(t.app);
    const svc = await createIdentity(t.app, tenant.adminToken, { role: 'service' });
    const url = `/v1/identities/${svc.identity.id}`;
    expectError(await call('PATCH', url, tenant.adminToken, {}), 400, 'validation_failed');
    const err = expectError(
      await call('PATCH', url, tenant.adminToken, { tokenTtlSeconds: 5 }),
      400,
      'validation_failed',
    );
    expect(err.details?.map((d) => d.path)).toContain('body.tokenTtlSeconds');
    expectError(await call('GET', '/v1/identities/not-a-uuid', tenant.adminToken), 400, 'validation_failed');
  });

  it('deletes an identity: 204, then 404 on read, update, rotate and a second delete', async () => {
    const tenant = await createTenant(t.app);
    const svc = await createIdentity(t.app, tenant.adminToken, { role: 'auditor' });
    const url = `/v1/identities/${svc.identity.id}`;
    const del = await call('DELETE', url, tenant.adminToken);
    expect(del.statusCode).toBe(204);
    expect(del.body).toBe('');
    expectError(await call('GET', url, tenant.adminToken), 404, 'not_found');
    expectError(await call('PATCH', url, tenant.adminToken, { name: 'x' }), 404, 'not_found');
    expectError(await call('POST', `${url}/secret`, tenant.adminToken), 404, 'not_found');
    expectError(await call('DELETE', url, tenant.adminToken), 404, 'not_found');
  });

  it('refuses policies on a non-service identity (400), on create and on update', async () => {
    const tenant = await createTenant(t.app);
    const policies = [{ path: 'sandbox/x/*', capabilities: ['read'] }];
    for (const role of ['admin', 'auditor']) {
      const err = expectError(
        await call('POST', '/v1/identities', tenant.adminToken, { name: 'p', role, policies }),
        400,
        'validation_failed',
      );
      expect(err.details?.map((d) => d.path)).toContain('body.policies');
    }
    const auditor = await createIdentity(t.app, tenant.adminToken, { role: 'auditor' });
    const err = expectError(
      await call('PATCH', `/v1/identities/${auditor.identity.id}`, tenant.adminToken, { policies }),
      400,
      'validation_failed',
    );
    expect(err.details?.map((d) => d.path)).toContain('body.policies');
    const after = (await call('GET', `/v1/identities/${auditor.identity.id}`, tenant.adminToken)).json() as Identity;
    expect(after.policies).toEqual([]);
  });

  it('refuses malformed policies with the path of the bad field', async () => {
    const tenant = await createTenant(t.app);
    const err = expectError(
      await call('POST', '/v1/identities', tenant.adminToken, {
        name: 'p',
        role: 'service',
        policies: [
          { path: 'sandbox/x/*', capabilities: ['read'] },
          { path: 'a/b/c/d', capabilities: ['read', 'read'] },
        ],
      }),
      400,
      'validation_failed',
    );
    const paths = err.details?.map((d) => d.path) ?? [];
    expect(paths).toContain('body.policies.1.path');
    expect(paths).toContain('body.policies.1.capabilities');
  });

  it('keeps the last enabled admin: neither disabled nor deleted (409)', async () => {
    const tenant = await createTenant(t.app);
    const me = ((await call('GET', '/v1/auth/whoami', tenant.adminToken)).json() as WhoAmI).identityId;
    const self = `/v1/identities/${me}`;
    expectError(await call('PATCH', self, tenant.adminToken, { disabled: true }), 409, 'conflict');
    expectError(await call('DELETE', self, tenant.adminToken), 409, 'conflict');
    // Still enabled and usable.
    expect((await call('GET', self, tenant.adminToken)).statusCode).toBe(200);

    // A disabled second admin does not count.
    const second = await createIdentity(t.app, tenant.adminToken, { role: 'admin' });
    expect(
      (await call('PATCH', `/v1/identities/${second.identity.id}`, tenant.adminToken, { disabled: true })).statusCode,
    ).toBe(200);
    expectError(await call('DELETE', self, tenant.adminToken), 409, 'conflict');

    // With another enabled admin, the first may go.
    expect(
      (await call('PATCH', `/v1/identities/${second.identity.id}`, tenant.adminToken, { disabled: false })).statusCode,
    ).toBe(200);
    expect((await call('PATCH', self, tenant.adminToken, { disabled: true })).statusCode).toBe(200);
    const secondToken = await login(t.app, second.identity.clientId, second.clientSecret);
    expectError(await call('DELETE', `/v1/identities/${second.identity.id}`, secondToken), 409, 'conflict');
    expect((await call('DELETE', self, secondToken)).statusCode).toBe(204);
  });

  it("another tenant's identity is 404 on every route, exactly like a random uuid, and stays untouched", async () => {
    const root = await rootToken(t.app);
    const a = await createTenant(t.app, root);
    const b = await createTenant(t.app, root);
    const victim = await createIdentity(t.app, b.adminToken, { role: 'service', name: 'victim' });

    const probes: [HttpMethod, string, Record<string, unknown> | undefined][] = [
      ['GET', '', undefined],
      ['PATCH', '', { name: 'pwned', disabled: true }],
      ['DELETE', '', undefined],
      ['POST', '/secret', undefined],
    ];
    for (const [method, suffix, payload] of probes) {
      const cross = await call(method, `/v1/identities/${victim.identity.id}${suffix}`, a.adminToken, payload);
      const random = await call(method, `/v1/identities/${uuid()}${suffix}`, a.adminToken, payload);
      const crossErr = expectError(cross, 404, 'not_found');
      const randomErr = expectError(random, 404, 'not_found');
      expect(crossErr.message).toBe(randomErr.message);
      expect(Object.keys(cross.headers).sort()).toEqual(Object.keys(random.headers).sort());
    }
    // B's identity is intact: same name, enabled, and its token (same credentials) still works.
    const still = (await call('GET', `/v1/identities/${victim.identity.id}`, b.adminToken)).json() as Identity;
    expect(still).toMatchObject({ name: 'victim', disabled: false });
    expect((await call('GET', '/v1/auth/whoami', victim.token)).statusCode).toBe(200);
    // A's list shows none of B's identities.
    const list = (await call('GET', '/v1/identities?limit=1000', a.adminToken)).json() as IdentityPage;
    expect(list.items.every((i) => i.tenantId === a.tenant.id)).toBe(true);
  });

  it.each(['service', 'auditor'] as const)('a %s identity is 403 forbidden on every identities route', async (role) => {
    const tenant = await createTenant(t.app);
    const who = await createIdentity(t.app, tenant.adminToken, { role });
    for (const [method, url, payload] of identityRequests(who.identity.id)) {
      const err = expectError(await call(method, url, who.token, payload), 403, 'forbidden');
      expect(err.message).toContain(role);
    }
    expectError(await call('POST', '/v1/tenants', who.token, { slug: uniqueSlug(), name: 'X' }), 403, 'forbidden');
    expectError(await call('GET', '/v1/tenants', who.token), 403, 'forbidden');
    // Nothing changed: still one identity of that role, named as created, with its old secret.
    const after = (await call('GET', `/v1/identities/${who.identity.id}`, tenant.adminToken)).json() as Identity;
    expect(after.name).toBe(who.identity.name);
    expect(await login(t.app, who.identity.clientId, who.clientSecret)).toBeTruthy();
  });

  it('every authenticated route answers 401 without a token', async () => {
    const authenticated = (Object.entries(routes) as [string, RouteDef][]).filter(([, r]) => r.action !== null);
    expect(authenticated.length).toBeGreaterThanOrEqual(8);
    for (const [name, r] of authenticated) {
      const url = buildPath(r.path, {
        id: uuid(),
        kind: 'sandbox',
        owner: 'o',
        name: 'N',
        version: 1,
        slug: 'staging',
      });
      const res = await call(r.method, url, null, r.body ? {} : undefined);
      expect(res.statusCode, `${name} ${r.method} ${url}`).toBe(401);
      expect((res.json() as ErrorEnvelope).error.code).toBe('unauthorized');
    }
  });

  it('the routes without a token are only health, readiness, JWKS and login', () => {
    const open = (Object.entries(routes) as [string, RouteDef][]).filter(([, r]) => r.action === null).map(([n]) => n);
    expect(open.sort()).toEqual(['health', 'issueToken', 'jwks', 'ready']);
  });
});
