import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, createIdentity, createTenant } from '../support/factories.ts';
import { createTestApp, type TestApp } from '../support/test-app.ts';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

describe('smoke', () => {
  it('creates a tenant and an identity', async () => {
    const tenant = await createTenant(t.app);
    const svc = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      policies: [{ path: 'sandbox/x/*', capabilities: ['read'] }],
    });
    const res = await t.app.inject({ url: '/v1/auth/whoami', headers: bearer(svc.token) });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ role: 'service', tenantId: tenant.tenant.id });
  });
});
