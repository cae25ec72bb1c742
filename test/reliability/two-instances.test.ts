import { describe, expect, it } from 'vitest';
import { type Api, type Cluster, call, clusterSuite, type Keys, tenantOn, token } from './harness.ts';
import { recordOutcome } from './results.ts';

let cluster: Cluster;
let keys: Keys;
let a: Api;
let b: Api;
clusterSuite({ apis: [{ COFFER_SCHEDULER_ENABLED: 'false' }, { COFFER_SCHEDULER_ENABLED: 'false' }] }, (s) => {
  ({ cluster, keys } = s);
  [a, b] = s.apis;
});

describe('two API instances on one database', () => {
  it('a write, a rotation, a policy change and a data-key rotation through one are seen through the other at once', async () => {
    const t = await tenantOn(a, keys);
    const onB = await token(b.base, t.admin.clientId, t.admin.clientSecret);
    const P = '/v1/secrets/shared/two/KEY';
    let stale = 0;
    for (let i = 1; i <= 20; i++) {
      expect((await call(a.base, 'PUT', P, { token: t.adminToken, body: { value: `v${i}` } })).status).toBeLessThan(
        300,
      );
      const r = await call(b.base, 'GET', P, { token: onB });
      if ((r.body as { value: string }).value !== `v${i}`) stale++;
    }
    expect(stale).toBe(0);

    await call(a.base, 'POST', `${P}/rotate`, { token: t.adminToken, body: { value: 'rotated-on-a' } });
    expect((await call(b.base, 'GET', P, { token: onB })).body).toMatchObject({ value: 'rotated-on-a', version: 21 });

    // A service reads through B (which caches its identity); narrowing its policy through A applies on B next request.
    const svc = await call(a.base, 'POST', '/v1/identities', {
      token: t.adminToken,
      body: { name: 'svc', role: 'service', policies: [{ path: 'shared/two/*', capabilities: ['read'] }] },
    });
    const created = svc.body as { identity: { id: string; clientId: string }; clientSecret: string };
    const svcOnB = await token(b.base, created.identity.clientId, created.clientSecret);
    expect((await call(b.base, 'GET', P, { token: svcOnB })).status).toBe(200);
    await call(a.base, 'PATCH', `/v1/identities/${created.identity.id}`, {
      token: t.adminToken,
      body: { policies: [{ path: 'shared/two/OTHER', capabilities: ['read'] }] },
    });
    expect((await call(b.base, 'GET', P, { token: svcOnB })).status).toBe(403);
    await call(a.base, 'PATCH', `/v1/identities/${created.identity.id}`, {
      token: t.adminToken,
      body: { disabled: true },
    });
    expect((await call(b.base, 'GET', P, { token: svcOnB })).status).toBe(401);

    // Data key rotated through A: B still holds the old key in its cache, yet its writes and reads succeed.
    expect((await call(a.base, 'POST', '/v1/keys/rotate', { token: t.adminToken })).status).toBe(202);
    expect((await call(b.base, 'PUT', P, { token: onB, body: { value: 'written-on-b' } })).status).toBe(200);
    expect((await call(a.base, 'GET', P, { token: t.adminToken })).body).toMatchObject({ value: 'written-on-b' });
    expect((await call(b.base, 'GET', P, { token: onB })).body).toMatchObject({ value: 'written-on-b' });
    const sealed = await cluster.query<{ dek_version: number }>(
      `select v.dek_version from coffer.secret_versions v join coffer.secrets s on s.id = v.secret_id
       where s.tenant_id = $1 and s.name = 'KEY' and v.version = s.current_version`,
      [t.tenantId],
    );
    expect(sealed[0]?.dek_version).toBe(2); // sealed under the new key, not B's stale one
    recordOutcome('two-instances', {
      staleReads: stale,
      policyChangeSeenByOtherReplica: true,
      staleKeyWritesRetried: true,
    });
  });
});
