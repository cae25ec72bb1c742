import { randomBytes } from 'node:crypto';
import { CofferClient, CofferError } from '@coffer/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliTenant, runCli } from '../support/cli.ts';
import { createIdentity } from '../support/factories.ts';
import { listeningSuite } from '../support/suite.ts';
import { asLease, READ_ITEMS, type TargetCorner, targetCorner } from '../support/target-db.ts';
import type { TestApp } from '../support/test-app.ts';

/** The SDK's lease calls and the CLI's `coffer dynamic` and `coffer lease` commands, over real HTTP. */

let t: TestApp;
let url: string;
listeningSuite((s) => ({ t, url } = s));

let corner: TargetCorner;
beforeAll(async () => {
  corner = await targetCorner();
});
afterAll(async () => {
  await corner?.drop();
});

describe('the SDK', () => {
  it('createLease, renewLease, revokeLease: a role that logs in, is renewed, and is gone after revocation', async () => {
    const c = await cliTenant(t, url);
    const admin = new CofferClient({ baseUrl: url, token: c.adminToken });
    await admin.putSecret('shared/dynamic/ADMIN_URL', corner.adminUrl);
    const name = `sdk-${randomBytes(3).toString('hex')}`;
    await admin.call('createPostgresBackend', {
      body: {
        name,
        connectionSecret: 'shared/dynamic/ADMIN_URL',
        ...READ_ITEMS,
        defaultTtlSeconds: 60,
        maxTtlSeconds: 300,
      },
    });
    const svc = await createIdentity(t.app, c.adminToken, {
      role: 'service',
      policies: [{ path: `dynamic/${name}`, capabilities: ['read'] }],
    });
    const coffer = new CofferClient({
      baseUrl: url,
      clientId: svc.identity.clientId,
      clientSecret: svc.clientSecret,
    });
    const lease = await coffer.createLease(name, { ttlSeconds: 30 });
    expect(
      await asLease(corner.loginUrl(lease.username, lease.password), 'select count(*)::int as n from items'),
    ).toEqual({
      rows: [{ n: 2 }],
    });
    const renewed = await coffer.renewLease(lease.leaseId, { ttlSeconds: 3600 });
    expect(renewed.expiresAt).toBe(lease.maxExpiresAt);
    expect((await coffer.getLease(lease.leaseId)).state).toBe('active');
    expect((await coffer.revokeLease(lease.leaseId)).state).toBe('revoked');
    expect(await corner.roleExists(lease.username)).toBe(false);
    const inventory = await admin.listLeases({ backend: name }).all();
    expect(inventory.map((l) => [l.id, l.state])).toEqual([[lease.leaseId, 'revoked']]);
    // A service without the capability gets the contracts' error code.
    const other = await createIdentity(t.app, c.adminToken, { role: 'service', policies: [] });
    const refused = await new CofferClient({ baseUrl: url, token: other.token }).createLease(name).catch((e) => e);
    expect(refused).toBeInstanceOf(CofferError);
    expect((refused as CofferError).code).toBe('forbidden');
    c.cleanup();
  });
});

describe('the CLI', () => {
  // A dozen CLI processes in a row: on a loaded 2-core machine each can take seconds to start.
  it('coffer dynamic create/list/show/delete and coffer lease create/renew/show/list/revoke', async () => {
    const c = await cliTenant(t, url);
    const name = `cli-${randomBytes(3).toString('hex')}`;
    const run = (args: string[]) => runCli(args, { env: c.env });
    expect((await runCli(['set', 'shared/dynamic/ADMIN_URL'], { env: c.env, input: corner.adminUrl })).code).toBe(0);

    const created = await run([
      'dynamic',
      'create',
      name,
      '--connection-secret',
      'shared/dynamic/ADMIN_URL',
      '--creation',
      READ_ITEMS.creationStatements[0] as string,
      '--creation',
      READ_ITEMS.creationStatements[1] as string,
      '--revocation',
      READ_ITEMS.revocationStatements[0] as string,
      '--default-ttl',
      '10m',
      '--max-ttl',
      '1h',
    ]);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stderr).toContain(`dynamic/${name}`);
    const listed = await run(['dynamic', 'list']);
    expect(listed.stdout).toMatch(new RegExp(`${name}\\s+shared/dynamic/ADMIN_URL\\s+600s/3600s\\s+0`));
    const shown = JSON.parse((await run(['dynamic', 'show', name, '--json'])).stdout) as Record<string, unknown>;
    expect(shown).toMatchObject({
      name,
      maxTtlSeconds: 3600,
      revocationStatements: READ_ITEMS.revocationStatements.slice(0, 1),
    });
    expect(JSON.stringify(shown)).not.toContain(corner.adminPassword);

    const leased = await run(['lease', 'create', name, '--ttl', '5m']);
    expect(leased.code, leased.stderr).toBe(0);
    const lease = JSON.parse(leased.stdout) as {
      leaseId: string;
      username: string;
      password: string;
      maxExpiresAt: string;
    };
    expect(await asLease(corner.loginUrl(lease.username, lease.password), 'select 1 as one')).toEqual({
      rows: [{ one: 1 }],
    });
    const env = await run(['lease', 'create', name, '--dotenv']);
    expect(env.stdout).toMatch(/^PGUSER=v_cli-.+\nPGPASSWORD=[A-Za-z0-9_-]{43}\nCOFFER_LEASE_ID=[0-9a-f-]{36}\n$/);

    const renewed = await run(['lease', 'renew', lease.leaseId, '--ttl', '2h']);
    expect(renewed.stderr).toContain('its maximum');
    const one = JSON.parse((await run(['lease', 'show', lease.leaseId, '--json'])).stdout) as { expiresAt: string };
    expect(one.expiresAt).toBe(lease.maxExpiresAt);
    const table = await run(['lease', 'list', '--backend', name]);
    expect(table.stdout.split('\n').filter((l) => l.includes(name))).toHaveLength(2);

    const revoked = await run(['lease', 'revoke', lease.leaseId]);
    expect(revoked.stderr).toContain(`the role ${lease.username} is gone`);
    expect((await run(['dynamic', 'delete', name])).code).toBe(1); // the --dotenv lease is still active
    const all = await run(['lease', 'revoke', '--backend', name, '--json']);
    expect(JSON.parse(all.stdout)).toEqual({ requested: 1, revoked: 1, pending: 0 });
    expect((await run(['lease', 'list', '--state', 'active', '--json'])).stdout.trim()).toBe('[]');
    const removed = await run(['dynamic', 'delete', name]);
    expect(removed.code, removed.stderr).toBe(0);
    expect((await run(['dynamic', 'show', name])).code).toBe(3);
    expect((await run(['lease', 'revoke'])).code).toBe(2);
    c.cleanup();
  }, 120_000);
});
