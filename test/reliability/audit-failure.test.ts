import { describe, expect, it } from 'vitest';
import { type Api, type Cluster, call, clusterSuite, isEnvelope, type Keys, tenantOn } from './harness.ts';
import { recordOutcome } from './results.ts';

let cluster: Cluster;
let api: Api;
let keys: Keys;
clusterSuite({ apis: [{}] }, (s) => {
  ({ cluster, keys } = s);
  [api] = s.apis;
});

describe('the audit store fails', () => {
  it('refuses every request that needs an event with 503, changes nothing, and returns no value without its event', async () => {
    const { tenantId, adminToken } = await tenantOn(api, keys);
    await call(api.base, 'PUT', '/v1/secrets/sandbox/aud/K', { token: adminToken, body: { value: 'before' } });
    await cluster.query(`
      create function coffer.test_refuse_audit() returns trigger language plpgsql as $$
      begin raise exception 'audit store is down (test)'; end $$`);
    await cluster.query(
      `create trigger test_refuse_audit before insert on coffer.audit_events for each row
       when (new.tenant_id = '${tenantId}') execute function coffer.test_refuse_audit()`,
    );
    const refused: Record<string, number> = {};
    try {
      const attempts = {
        read: await call(api.base, 'GET', '/v1/secrets/sandbox/aud/K', { token: adminToken }),
        bundle: await call(api.base, 'GET', '/v1/bundles/sandbox/aud', { token: adminToken }),
        write: await call(api.base, 'PUT', '/v1/secrets/sandbox/aud/K', {
          token: adminToken,
          body: { value: 'after' },
        }),
        create: await call(api.base, 'PUT', '/v1/secrets/sandbox/aud/NEW', { token: adminToken, body: { value: 'x' } }),
        delete: await call(api.base, 'DELETE', '/v1/secrets/sandbox/aud/K', { token: adminToken }),
        rotate: await call(api.base, 'POST', '/v1/secrets/sandbox/aud/K/rotate', {
          token: adminToken,
          body: { value: 'rotated' },
        }),
        identity: await call(api.base, 'POST', '/v1/identities', {
          token: adminToken,
          body: { name: 'x', role: 'auditor' },
        }),
        keyRotation: await call(api.base, 'POST', '/v1/keys/rotate', { token: adminToken }),
      };
      for (const [name, r] of Object.entries(attempts)) {
        expect(r.status, name).toBe(503);
        expect(isEnvelope(r.body), name).toBe(true);
        expect(JSON.stringify(r.body), name).not.toContain('before');
        refused[name] = r.status;
      }
    } finally {
      await cluster.query('drop trigger test_refuse_audit on coffer.audit_events');
      await cluster.query('drop function coffer.test_refuse_audit()');
    }
    const after = await call(api.base, 'GET', '/v1/secrets/sandbox/aud/K', { token: adminToken });
    expect(after.status).toBe(200);
    expect(after.body).toMatchObject({ value: 'before', version: 1 });
    expect((await call(api.base, 'GET', '/v1/secrets/sandbox/aud/NEW', { token: adminToken })).status).toBe(404);
    const keys2 = await call(api.base, 'GET', '/v1/keys', { token: adminToken });
    expect((keys2.body as { activeVersion: number }).activeVersion).toBe(1);
    recordOutcome('audit-store-failure', {
      requestKinds: Object.keys(refused).length,
      allRefusedWith503: true,
      changesMade: 0,
      valuesReturned: 0,
    });
  });
});
