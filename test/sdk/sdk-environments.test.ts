import { CofferClient, CofferError } from '@coffer/sdk';
import { describe, expect, inject, it } from 'vitest';
import { uniqueSlug } from '../support/factories.ts';
import { listeningSuite } from '../support/suite.ts';

let baseUrl: string;
listeningSuite((s) => {
  baseUrl = s.url;
});

describe('SDK: an environment option', () => {
  it('puts every secret, bundle, list and rotation call of a client in its environment', async () => {
    const root = new CofferClient({ baseUrl, clientId: 'root', clientSecret: inject('rootSecret') });
    const created = await root.call('createTenant', { body: { slug: uniqueSlug('sdkenv'), name: 'SDK environments' } });
    const admin = new CofferClient({ baseUrl, ...created.admin });
    await admin.call('createEnvironment', { body: { slug: 'staging', name: 'Staging' } });
    const staging = new CofferClient({ baseUrl, ...created.admin, environment: 'staging', cache: { ttlMs: 60_000 } });

    await admin.putSecret('shared/app/DB_URL', 'default-value');
    await staging.putSecret('shared/app/DB_URL', 'staging-value');
    await staging.putSecret('shared/app/DB_URL', 'staging-value-2', { ifVersion: 1 });
    expect((await admin.getSecret('shared/app/DB_URL')).value).toBe('default-value');
    const s = await staging.getSecret('shared/app/DB_URL');
    expect([s.value, s.version]).toEqual(['staging-value-2', 2]);
    expect((await staging.getSecret('shared/app/DB_URL', { version: 1 })).value).toBe('staging-value');
    expect((await staging.getBundle('shared', 'app')).values).toEqual({ DB_URL: 'staging-value-2' });
    expect((await staging.listSecrets({ owner: 'app' }).all()).map((m) => m.version)).toEqual([2]);
    expect((await staging.rotate('shared/app/DB_URL', { value: 'rotated' })).version).toBe(3);
    expect((await admin.getSecret('shared/app/DB_URL')).version).toBe(1);
    // A call that names its own env wins over the client's.
    const own = await staging.call('getSecret', {
      params: { kind: 'shared', owner: 'app', name: 'DB_URL' },
      query: { env: 'default' },
    });
    expect(own.value).toBe('default-value');
    const diff = await admin.call('diffEnvironments', {
      query: { from: 'default', to: 'staging', kind: 'shared', owner: 'app' },
    });
    expect(diff.items.map((i) => i.state)).toEqual(['different']);
    const nowhere = new CofferClient({ baseUrl, ...created.admin, environment: 'nowhere' });
    const err = await nowhere.putSecret('shared/app/X', 'v').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CofferError);
    expect(err).toMatchObject({ code: 'not_found', status: 404 });
  });
});
