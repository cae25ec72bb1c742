import { CofferClient, CofferError } from '@coffer/sdk';
import { describe, expect, inject, it } from 'vitest';
import { uniqueSlug } from '../support/factories.ts';
import { listeningSuite } from '../support/suite.ts';

let baseUrl: string;
listeningSuite((s) => {
  baseUrl = s.url;
});

describe('SDK over a real socket', () => {
  it('logs in as root, creates a tenant, and manages identities as its admin', async () => {
    const root = new CofferClient({ baseUrl, clientId: 'root', clientSecret: inject('rootSecret') });
    const created = await root.call('createTenant', { body: { slug: uniqueSlug('sdk'), name: 'SDK tenant' } });
    expect(created.tenant.name).toBe('SDK tenant');

    const admin = new CofferClient({ baseUrl, ...created.admin });
    const me = await admin.call('whoami');
    expect(me).toMatchObject({ role: 'admin', tenantId: created.tenant.id });

    const svc = await admin.call('createIdentity', {
      body: { name: 'billing', role: 'service', policies: [{ path: 'sandbox/sbx-1/*', capabilities: ['read'] }] },
    });
    const fetched = await admin.call('getIdentity', { params: { id: svc.identity.id } });
    expect(fetched.policies).toEqual([{ path: 'sandbox/sbx-1/*', capabilities: ['read'] }]);

    const service = new CofferClient({ baseUrl, clientId: svc.identity.clientId, clientSecret: svc.clientSecret });
    expect((await service.call('whoami')).role).toBe('service');
  });

  it('throws CofferError carrying the server code, status and request id', async () => {
    const admin = new CofferClient({ baseUrl, clientId: 'root', clientSecret: inject('rootSecret') });
    const err = await admin.call('listIdentities').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CofferError);
    expect(err).toMatchObject({ code: 'forbidden', status: 403 });
    expect((err as CofferError).requestId).toMatch(/.+/);

    const bad = new CofferClient({ baseUrl, clientId: 'root', clientSecret: 'wrong-secret-wrong-secret' });
    await expect(bad.call('whoami')).rejects.toMatchObject({ code: 'unauthorized', status: 401 });
  });

  it('reports an unreachable server as network_error after its retries', async () => {
    const client = new CofferClient({ baseUrl: 'http://127.0.0.1:1', token: 'x', maxAttempts: 2, backoffMs: 1 });
    await expect(client.call('health')).rejects.toMatchObject({ code: 'network_error', status: 0 });
  });
});
