import { CofferClient, CofferError } from '@coffer/sdk';
import { describe, expect, inject, it } from 'vitest';
import { uniqueSlug } from '../support/factories.ts';
import { listeningSuite } from '../support/suite.ts';

let baseUrl: string;
listeningSuite((s) => {
  baseUrl = s.url;
});

describe('SDK: deployments, consumers and revocation, typed', () => {
  it('makes, reads for, lists, shows and revokes deployments; consumers, rotation status and revokeVersion', async () => {
    const root = new CofferClient({ baseUrl, clientId: 'root', clientSecret: inject('rootSecret') });
    const created = await root.call('createTenant', { body: { slug: uniqueSlug('sdkdep'), name: 'SDK deployments' } });
    const admin = new CofferClient({ baseUrl, ...created.admin });
    await admin.call('createEnvironment', { body: { slug: 'staging', name: 'Staging' } });
    // A client in staging: deployment calls without an environment go there too.
    const staging = new CofferClient({ baseUrl, ...created.admin, environment: 'staging' });
    await staging.putSecret('sandbox/web/SESSION_KEY', 'initial-session', { class: 'service', ownerTeam: 'web' });
    await staging.putSecret('sandbox/web/DB_URL', 'postgres://db.internal/web', { class: 'infrastructure' });

    const plan = await staging.planDeployment({ tier: 'local', bundles: ['sandbox/web'] });
    expect(plan.environment).toBe('staging');
    expect(plan.plan.map((i) => [i.path, i.action])).toEqual([
      ['sandbox/web/DB_URL', 'strip'],
      ['sandbox/web/SESSION_KEY', 'generate'],
    ]);
    const d = await staging.createDeployment({ name: 'sdk-1', tier: 'local', bundles: ['sandbox/web'] });
    expect(d.environment).toBe('staging');
    expect(d.generated.SESSION_KEY).toMatch(/^[A-Za-z0-9_-]{43}$/);

    const read = await staging.getBundle('sandbox', 'web', { deployment: d.id });
    expect(read.values).toEqual({ SESSION_KEY: d.generated.SESSION_KEY });
    const shown = await admin.getDeployment(d.id);
    expect(shown.received.map((r) => r.via).sort()).toEqual(['created', 'run']);
    expect((await staging.listDeployments().all()).map((x) => x.id)).toEqual([d.id]);
    expect(await admin.listDeployments({ env: 'default' }).all()).toEqual([]);

    const consumers = await staging.consumers('sandbox/web/SESSION_KEY', { within: '1h' });
    expect(consumers.items.map((c) => [c.deployment, c.lastVersion, c.source])).toEqual([[d.id, 2, 'bundle']]);
    await staging.putSecret('sandbox/web/SESSION_KEY', 'set-by-hand');
    const status = await staging.rotationStatus('sandbox/web/SESSION_KEY');
    expect([status.current, status.previous, status.safeToRevoke]).toEqual([3, 2, false]);
    const refused = await staging.revokeVersion('sandbox/web/SESSION_KEY', 2).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(CofferError);
    expect((refused as CofferError).code).toBe('consumers_pending');
    expect((refused as CofferError).status).toBe(409);
    expect((refused as CofferError).details[0]?.message).toContain(d.id);

    const revoked = await admin.revokeDeployment(d.id, { notes: 'sdk' });
    expect(revoked.revokedVersions).toEqual([{ path: 'sandbox/web/SESSION_KEY', version: 2 }]);
    expect(revoked.rotated).toEqual([]); // version 3, written by hand, is current: nothing of the deployment's
    const gone = await staging.getSecret('sandbox/web/SESSION_KEY', { version: 2 }).catch((e: unknown) => e);
    expect((gone as CofferError).code).toBe('gone');
    const rotated = await staging.rotate('sandbox/web/SESSION_KEY', { value: 'rotated-by-sdk', notes: 'from the SDK' });
    expect(rotated.version).toBe(4);
    const v3 = await staging.revokeVersion('sandbox/web/SESSION_KEY', 3, { notes: 'by hand' });
    expect([v3.version, v3.forced]).toEqual([3, false]);
    const log = await staging.call('rotationLog', {});
    expect(log.items.map((e) => [e.event, e.fromVersion, e.notes])).toEqual([
      ['revoke', 3, 'by hand'],
      ['rotate', 3, 'from the SDK'],
      ['revoke', 2, 'sdk'],
    ]);
    const inventory = await admin.inventory().all();
    expect(inventory.map((i) => [i.environment, i.name, i.class, i.ownerTeam])).toEqual([
      ['staging', 'DB_URL', 'infrastructure', null],
      ['staging', 'SESSION_KEY', 'service', 'web'],
    ]);
  });
});
