import { type RouteName, routes } from '@coffer/contracts';
import { describe, expect, it } from 'vitest';
import { bearer, createIdentity, createTenant } from '../support/factories.ts';
import { secretsApi } from '../support/secrets.ts';
import { ownerSuite } from '../support/suite.ts';
import type { TestApp } from '../support/test-app.ts';

/**
 * Route policy is data on the route's entry in the contracts. `identityRecheckedInSql` lets authentication start
 * from a cached identity, which is safe only because the route's SQL re-checks the identity's revision: each
 * flagged route must refuse a disabled identity's token on the very next request, though its identity is cached.
 */

let t: TestApp;
ownerSuite((s) => ({ t } = s));

/** A request to each flagged route, made by a service identity that may read and write sandbox `owner`. */
const flagged: Partial<
  Record<RouteName, (owner: string) => { method?: 'PUT' | 'POST'; url: string; payload?: Record<string, unknown> }>
> = {
  getSecret: (owner) => ({ url: `/v1/secrets/sandbox/${owner}/db-password` }),
  getBundle: (owner) => ({ url: `/v1/bundles/sandbox/${owner}` }),
  putSecret: (owner) => ({ method: 'PUT', url: `/v1/secrets/sandbox/${owner}/db-password`, payload: { value: 'x' } }),
  writeBundle: (owner) => ({
    method: 'POST',
    url: `/v1/bundles/sandbox/${owner}`,
    payload: { set: { 'db-password': { value: 'y' } } },
  }),
};

describe('identityRecheckedInSql', () => {
  it('is set on exactly the routes this file exercises (a newly flagged route needs a case here)', () => {
    const set = (Object.keys(routes) as RouteName[]).filter(
      (n) => (routes[n] as { identityRecheckedInSql?: boolean }).identityRecheckedInSql === true,
    );
    expect(set.sort()).toEqual(Object.keys(flagged).sort());
  });

  for (const [name, request] of Object.entries(flagged)) {
    it(`${name}: a disabled identity's cached token is refused on the very next request`, async () => {
      const tenant = await createTenant(t.app);
      const owner = `sbx-${name.toLowerCase()}`;
      const admin = secretsApi(t.app, tenant.adminToken);
      expect((await admin.put(`sandbox/${owner}/db-password`, { value: 'hunter2' })).statusCode).toBe(201);
      const svc = await createIdentity(t.app, tenant.adminToken, {
        role: 'service',
        policies: [{ path: `sandbox/${owner}/*`, capabilities: ['read', 'list', 'write'] }],
      });
      const read = () => t.app.inject({ ...request(owner), headers: bearer(svc.token) });
      // Twice, so the identity is in the principal cache when it is disabled.
      expect((await read()).statusCode).toBe(200);
      expect((await read()).statusCode).toBe(200);

      const disable = await t.app.inject({
        method: 'PATCH',
        url: `/v1/identities/${svc.identity.id}`,
        headers: bearer(tenant.adminToken),
        payload: { disabled: true },
      });
      expect(disable.statusCode, disable.body).toBe(200);

      const next = await read();
      expect(next.statusCode, next.body).toBe(401);
      expect(next.json().error.code).toBe('unauthorized');
    });
  }

  it("a write's cached identity whose policy was narrowed is refused on the very next write, and nothing is written", async () => {
    const tenant = await createTenant(t.app);
    const svc = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      policies: [{ path: 'sandbox/narrowed/*', capabilities: ['read', 'write'] }],
    });
    const put = (value: string) =>
      t.app.inject({
        method: 'PUT',
        url: '/v1/secrets/sandbox/narrowed/K',
        headers: bearer(svc.token),
        payload: { value },
      });
    expect((await put('a')).statusCode).toBe(201);
    expect((await put('b')).statusCode).toBe(200);
    const narrow = await t.app.inject({
      method: 'PATCH',
      url: `/v1/identities/${svc.identity.id}`,
      headers: bearer(tenant.adminToken),
      payload: { policies: [{ path: 'sandbox/narrowed/*', capabilities: ['read'] }] },
    });
    expect(narrow.statusCode, narrow.body).toBe(200);
    const next = await put('c');
    expect(next.statusCode, next.body).toBe(403);
    const admin = secretsApi(t.app, tenant.adminToken);
    expect((await admin.get('sandbox/narrowed/K')).json()).toMatchObject({ version: 2, value: 'b' });
  });
});
