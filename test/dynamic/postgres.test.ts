import { Lease, LeasePage, PostgresBackend, PostgresBackendList, RevokeLeasesResult } from '@coffer/contracts';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsedStatements } from '../../apps/api/src/dynamic/revocation.ts';
import { TargetConnections } from '../../apps/api/src/dynamic/target.ts';
import { createBackend, createLease } from '../support/dynamic.ts';
import { createIdentity } from '../support/factories.ts';
import { eventually } from '../support/ops.ts';
import { expectError, expectOk, sender } from '../support/secrets.ts';
import { ownerSuite, type TenantCtx, tenantCtx } from '../support/suite.ts';
import { asLease, READ_ITEMS, type TargetCorner, targetCorner } from '../support/target-db.ts';
import type { TestApp } from '../support/test-app.ts';

/**
 * Dynamic PostgreSQL credentials against a real second PostgreSQL (the target cluster of the global setup): backends
 * configured through the API, leases that log in, expire, renew and are revoked, exactly once.
 */

let t: TestApp;
let owner: pg.Client;
let root: string;
ownerSuite((s) => ({ t, owner, root } = s));

let corner: TargetCorner;
beforeAll(async () => {
  corner = await targetCorner();
});
afterAll(async () => {
  await corner?.drop();
});

/** Every password this file was handed, for the leak scan at the end. */
const passwords: string[] = [];
async function leased(...args: Parameters<typeof createLease>) {
  const l = await createLease(...args);
  passwords.push(l.password);
  return l;
}

/** A tenant with a backend and a service that may take leases of it. */
async function world(o: Parameters<typeof createBackend>[3] = {}) {
  const ctx: TenantCtx = await tenantCtx(t, root);
  const b = await createBackend(t.app, ctx.tenant.adminToken, corner, o);
  const service = await createIdentity(t.app, ctx.tenant.adminToken, {
    role: 'service',
    policies: [{ path: `dynamic/${b.name}`, capabilities: ['read'] }],
  });
  const admin = sender(t.app, ctx.tenant.adminToken);
  const asService = sender(t.app, service.token);
  return { ...ctx, ...b, service, admin, asService };
}

/** A deployment of the tenant's sandbox/app bundle (one inject-only secret) to the cloud tier: its id. */
async function deployment(w: Awaited<ReturnType<typeof world>>): Promise<string> {
  expect((await w.admin('PUT', '/v1/secrets/sandbox/app/API_URL', { value: 'https://api.internal' })).statusCode).toBe(
    201,
  );
  const made = await w.admin('POST', '/v1/deployments', {
    name: `web-${Date.now()}`,
    environment: 'default',
    tier: 'cloud',
    bundles: ['sandbox/app'],
  });
  expect(made.statusCode, made.body).toBe(201);
  return (made.json() as { id: string }).id;
}

async function leaseRow(id: string) {
  const { rows } = await owner.query<{ state: string; revoke_attempts: number; next_attempt_at: Date | null }>(
    'select state, revoke_attempts, next_attempt_at from coffer.leases where id = $1',
    [id],
  );
  return rows[0];
}

const expire = (id: string) =>
  owner.query(`update coffer.leases set expires_at = now() - interval '1 second' where id = $1`, [id]);
const makeRetryDue = (id: string, attempts?: number) =>
  owner.query(
    `update coffer.leases set next_attempt_at = now() - interval '1 second', claim_token = null,
       revoke_attempts = coalesce($2, revoke_attempts) where id = $1`,
    [id, attempts ?? null],
  );

async function revokeEvents(tenantId: string, leaseId: string) {
  const { rows } = await owner.query<{ action: string; outcome: string; actor_name: string | null }>(
    `select action, outcome, actor_name from coffer.audit_events
     where tenant_id = $1 and action = 'leases.revoke' and details->>'leaseId' = $2 order by seq`,
    [tenantId, leaseId],
  );
  return rows;
}

describe('configuring a PostgreSQL backend', () => {
  it('stores the backend and answers it without the connection URL; lists it for admins and auditors', async () => {
    const w = await world();
    const got = expectOk(await w.admin('GET', `/v1/dynamic/postgres/${w.name}`), 200, PostgresBackend);
    expect(got).toMatchObject({
      name: w.name,
      engine: 'postgres',
      connectionSecret: w.secretPath,
      renewStatements: ['ALTER ROLE {{name}} VALID UNTIL {{expiration}}'],
      usernameTemplate: 'v_{{backend}}_{{identity}}_{{random}}',
      activeLeases: 0,
    });
    const auditor = await createIdentity(t.app, w.tenant.adminToken, { role: 'auditor' });
    const listed = expectOk(
      await sender(t.app, auditor.token)('GET', '/v1/dynamic/postgres'),
      200,
      PostgresBackendList,
    );
    expect(listed.items.map((i) => i.name)).toEqual([w.name]);
    for (const res of [JSON.stringify(got), JSON.stringify(listed)]) {
      expect(res).not.toContain(corner.adminPassword);
      expect(res).not.toContain(corner.adminUrl);
    }
    expectError(
      await w.admin('POST', '/v1/dynamic/postgres', {
        ...READ_ITEMS,
        name: w.name,
        connectionSecret: w.secretPath,
        defaultTtlSeconds: 60,
        maxTtlSeconds: 60,
      }),
      409,
      'conflict',
    );
  });

  it.each([
    [
      'an unknown placeholder',
      { creationStatements: ['CREATE ROLE {{user}} LOGIN'] },
      'body.creationStatements.0',
      /unknown placeholder \{\{user\}\}/,
    ],
    [
      'a quoted placeholder',
      { creationStatements: ['CREATE ROLE "{{name}}" LOGIN'] },
      'body.creationStatements.0',
      /inside a quoted identifier/,
    ],
    [
      'a placeholder in a string',
      { creationStatements: ["CREATE ROLE {{name}} PASSWORD '{{password}}'"] },
      'body.creationStatements.0',
      /inside a quoted string/,
    ],
    [
      'a password at revocation',
      { revocationStatements: ['ALTER ROLE {{name}} PASSWORD {{password}}'] },
      'body.revocationStatements.0',
      /cannot be used in revocation/,
    ],
    ['an unterminated string', { renewStatements: ["SELECT 'x"] }, 'body.renewStatements.0', /unterminated/],
    ['no role made', { creationStatements: ['SELECT 1'] }, 'body.creationStatements', /must make the role/],
    [
      'a template without {{random}}',
      { usernameTemplate: 'v_{{identity}}' },
      'body.usernameTemplate',
      /\{\{random\}\}/,
    ],
    [
      'a template too long',
      { usernameTemplate: `${'x'.repeat(40)}{{identity}}{{random}}` },
      'body.usernameTemplate',
      /at most 63/,
    ],
    ['a reserved prefix', { usernameTemplate: 'pg_{{random}}' }, 'body.usernameTemplate', /reserved/],
  ])('refuses %s with 400 validation_failed naming the statement', async (_label, override, path, message) => {
    const ctx = await tenantCtx(t, root);
    const admin = sender(t.app, ctx.tenant.adminToken);
    await admin('PUT', '/v1/secrets/shared/dynamic/ADMIN_URL', { value: corner.adminUrl });
    const err = expectError(
      await admin('POST', '/v1/dynamic/postgres', {
        name: 'orders',
        connectionSecret: 'shared/dynamic/ADMIN_URL',
        ...READ_ITEMS,
        defaultTtlSeconds: 60,
        maxTtlSeconds: 600,
        ...override,
      }),
      400,
      'validation_failed',
    );
    expect(err.details?.[0]?.path).toBe(path);
    expect(err.details?.[0]?.message).toMatch(message);
  });

  it('refuses the name postgres, so /v1/dynamic/postgres/:name and /v1/dynamic/:name/leases never meet', async () => {
    const ctx = await tenantCtx(t, root);
    const admin = sender(t.app, ctx.tenant.adminToken);
    const err = expectError(
      await admin('POST', '/v1/dynamic/postgres', {
        name: 'postgres',
        connectionSecret: 'shared/dynamic/ADMIN_URL',
        ...READ_ITEMS,
        defaultTtlSeconds: 60,
        maxTtlSeconds: 600,
      }),
      400,
      'validation_failed',
    );
    expect(err.details?.[0]).toMatchObject({ path: 'body.name', message: expect.stringMatching(/reserved/) });
    expectError(await admin('POST', '/v1/dynamic/postgres/leases'), 400, 'validation_failed');
  });

  it('refuses with 422 a connection secret that is missing, a database that is down, or an admin that cannot make roles', async () => {
    const ctx = await tenantCtx(t, root);
    const admin = sender(t.app, ctx.tenant.adminToken);
    const body = (connectionSecret: string) => ({
      name: 'orders',
      connectionSecret,
      ...READ_ITEMS,
      defaultTtlSeconds: 60,
      maxTtlSeconds: 600,
    });
    const missing = expectError(
      await admin('POST', '/v1/dynamic/postgres', body('shared/none/URL')),
      422,
      'unprocessable',
    );
    expect(missing.message).toMatch(/shared\/none\/URL does not exist/);

    const down = new URL(corner.adminUrl);
    down.port = '1';
    await admin('PUT', '/v1/secrets/shared/dynamic/DOWN', { value: down.toString() });
    const refused = expectError(
      await admin('POST', '/v1/dynamic/postgres', body('shared/dynamic/DOWN')),
      422,
      'unprocessable',
    );
    expect(refused.message).toMatch(/unavailable/);

    const weak = `dyn_weak_${corner.run}`;
    await corner.query(`create role ${weak} login password 'weak-password-123'`);
    const weakUrl = new URL(corner.adminUrl);
    weakUrl.username = weak;
    weakUrl.password = 'weak-password-123';
    await admin('PUT', '/v1/secrets/shared/dynamic/WEAK', { value: weakUrl.toString() });
    const cannot = expectError(
      await admin('POST', '/v1/dynamic/postgres', body('shared/dynamic/WEAK')),
      422,
      'unprocessable',
    );
    expect(cannot.message).toMatch(/CREATEROLE/);

    await admin('PUT', '/v1/secrets/shared/dynamic/NOT_A_URL', { value: 'mysql://x@y/z' });
    const notUrl = expectError(
      await admin('POST', '/v1/dynamic/postgres', body('shared/dynamic/NOT_A_URL')),
      422,
      'unprocessable',
    );
    expect(notUrl.message).toMatch(/postgres:\/\//);
    for (const e of [missing, refused, cannot, notUrl]) expect(JSON.stringify(e)).not.toContain(corner.adminPassword);
  });

  it('reads the connection secret in the environment it names, through the row MACs: a renamed row is refused', async () => {
    const ctx = await tenantCtx(t, root);
    const admin = sender(t.app, ctx.tenant.adminToken);
    const body = (name: string, connectionSecret: string) => ({
      name,
      connectionSecret,
      ...READ_ITEMS,
      defaultTtlSeconds: 60,
      maxTtlSeconds: 600,
    });
    expect((await admin('POST', '/v1/environments', { slug: 'production', name: 'production' })).statusCode).toBe(201);
    await admin('PUT', '/v1/secrets/shared/dynamic/PROD_URL?env=production', { value: corner.adminUrl });
    // Only in production: the default environment has no such secret.
    const inDefault = expectError(
      await admin('POST', '/v1/dynamic/postgres', body('prod-default', 'shared/dynamic/PROD_URL')),
      422,
      'unprocessable',
    );
    expect(inDefault.message).toMatch(/does not exist/);
    expectOk(
      await admin('POST', '/v1/dynamic/postgres', body('prod', 'shared/dynamic/PROD_URL@production')),
      201,
      PostgresBackend,
    );
    expectError(
      await admin('POST', '/v1/dynamic/postgres', body('bad-env', 'shared/dynamic/X@Not_A_Slug')),
      400,
      'validation_failed',
    );

    // A row moved to the path a backend names, outside the API: its MAC no longer holds, and nothing is read.
    await admin('PUT', '/v1/secrets/shared/dynamic/ELSEWHERE', { value: corner.adminUrl });
    await owner.query(
      `update coffer.secrets set name = 'MOVED' where tenant_id = $1 and kind = 'shared' and owner = 'dynamic' and name = 'ELSEWHERE'`,
      [ctx.tid],
    );
    const moved = expectError(
      await admin('POST', '/v1/dynamic/postgres', body('moved', 'shared/dynamic/MOVED')),
      422,
      'unprocessable',
    );
    expect(moved.message).toMatch(/integrity check/);
    expect(JSON.stringify([inDefault, moved])).not.toContain(corner.adminPassword);
  });

  it('is refused for a loopback database unless private targets are allowed (the webhooks’ address policy)', async () => {
    const strict = await (await import('../support/test-app.ts')).createTestApp({
      COFFER_DYNAMIC_ALLOW_PRIVATE: 'false',
    });
    try {
      const ctx = await tenantCtx(strict, root);
      const admin = sender(strict.app, ctx.tenant.adminToken);
      await admin('PUT', '/v1/secrets/shared/dynamic/ADMIN_URL', { value: corner.adminUrl });
      const err = expectError(
        await admin('POST', '/v1/dynamic/postgres', {
          name: 'orders',
          connectionSecret: 'shared/dynamic/ADMIN_URL',
          ...READ_ITEMS,
          defaultTtlSeconds: 60,
          maxTtlSeconds: 600,
        }),
        422,
        'unprocessable',
      );
      expect(err.message).toMatch(/private, loopback or link-local|must not be this machine/);
    } finally {
      await strict.close();
    }
  });

  it('deletes a backend only once none of its leases can still hold a role', async () => {
    const w = await world();
    const lease = await leased(t.app, w.service.token, w.name);
    const err = expectError(await w.admin('DELETE', `/v1/dynamic/postgres/${w.name}`), 409, 'conflict');
    expect(err.message).toMatch(/1 lease of this backend is not revoked/);
    expectOk(await w.admin('DELETE', `/v1/leases?backend=${w.name}`), 200, RevokeLeasesResult);
    expect((await w.admin('DELETE', `/v1/dynamic/postgres/${w.name}`)).statusCode).toBe(204);
    expectError(await w.admin('GET', `/v1/dynamic/postgres/${w.name}`), 404, 'not_found');
    // The lease stays in the inventory.
    expect(expectOk(await w.admin('GET', `/v1/leases/${lease.leaseId}`), 200, Lease).state).toBe('revoked');
  });
});

describe('leases', () => {
  it('a lease logs in and can do what its statements granted, and nothing more', async () => {
    const w = await world();
    const lease = await leased(t.app, w.service.token, w.name);
    expect(lease.username).toMatch(new RegExp(`^v_${w.name}_service-[0-9a-f]+_[a-z0-9]{12}$`));
    const url = corner.loginUrl(lease.username, lease.password);
    expect(await asLease(url, 'select label from items order by id')).toEqual({
      rows: [{ label: 'one' }, { label: 'two' }],
    });
    expect(await asLease(url, "insert into items values (3, 'three')")).toMatchObject({ code: '42501' });
    expect(await asLease(corner.loginUrl(lease.username, 'not-the-password'), 'select 1')).toMatchObject({
      code: '28P01',
    });
    // The role stops taking its password at the lease's end, whatever happens to the revocation.
    const [role] = await corner.query<{ rolvaliduntil: Date }>(
      'select rolvaliduntil from pg_roles where rolname = $1',
      [lease.username],
    );
    expect(role?.rolvaliduntil.toISOString()).toBe(lease.expiresAt);
    // Only the username and the state are stored.
    const { rows } = await owner.query('select * from coffer.leases where id = $1', [lease.leaseId]);
    expect(JSON.stringify(rows)).not.toContain(lease.password);
    expect(rows[0]).toMatchObject({ state: 'active', username: lease.username, identity_id: w.service.identity.id });
  });

  it('a creation statement that fails is a 422 naming its number and SQLSTATE only; the lease ends with nothing made', async () => {
    const w = await world({
      creationStatements: [
        'CREATE ROLE {{name}} LOGIN PASSWORD {{password}}',
        'GRANT SELECT ON no_such_table TO {{name}}',
      ],
    });
    const err = expectError(await w.asService('POST', `/v1/dynamic/${w.name}/leases`), 422, 'unprocessable');
    expect(err.message).toBe(
      'the backend cannot make this lease: creation statement 2 failed (SQLSTATE 42P01): see its SQLSTATE',
    );
    const page = expectOk(await w.admin('GET', `/v1/leases?backend=${w.name}`), 200, LeasePage);
    expect(page.items).toHaveLength(1);
    expect(page.items[0]).toMatchObject({ state: 'revoked', revokeReason: 'creation_failed', revokeAttempts: 0 });
    expect(await corner.roleExists(page.items[0]?.username ?? '')).toBe(false);
    const { rows } = await owner.query<{ outcome: string; error_code: string }>(
      `select outcome, error_code from coffer.audit_events where tenant_id = $1 and action = 'leases.create'`,
      [w.tid],
    );
    expect(rows).toEqual([{ outcome: 'error', error_code: 'unprocessable' }]);
  });

  it('needs read on dynamic/<backend>: 403 without it, 404 for a backend that does not exist', async () => {
    const w = await world();
    const other = await createIdentity(t.app, w.tenant.adminToken, {
      role: 'service',
      policies: [{ path: 'dynamic/elsewhere', capabilities: ['read'] }],
    });
    const err = expectError(await sender(t.app, other.token)('POST', `/v1/dynamic/${w.name}/leases`), 403, 'forbidden');
    expect(err.message).toMatch(`dynamic/${w.name}`);
    expectError(await w.admin('POST', '/v1/dynamic/nothing-here/leases'), 404, 'not_found');
    const auditor = await createIdentity(t.app, w.tenant.adminToken, { role: 'auditor' });
    expectError(await sender(t.app, auditor.token)('POST', `/v1/dynamic/${w.name}/leases`), 403, 'forbidden');
  });

  it('after its TTL the role is gone from pg_roles and its open session is ended; revoked once', async () => {
    const w = await world();
    const lease = await leased(t.app, w.service.token, w.name, { ttlSeconds: 30 });
    const session = new pg.Client({ connectionString: corner.loginUrl(lease.username, lease.password) });
    const ended = new Promise<string>((resolve) =>
      session.on('error', (e) => resolve((e as { code?: string }).code ?? 'error')),
    );
    await session.connect();
    expect((await session.query('select count(*)::int as n from items')).rows).toEqual([{ n: 2 }]);

    // Not due yet: nothing happens.
    await t.app.jobs.leases.revokeDue();
    expect(await corner.roleExists(lease.username)).toBe(true);

    await expire(lease.leaseId);
    await t.app.jobs.leases.revokeDue();
    expect(await corner.roleExists(lease.username)).toBe(false);
    expect(await ended).toBe('57P01');
    await session.end().catch(() => undefined);
    const after = expectOk(await w.admin('GET', `/v1/leases/${lease.leaseId}`), 200, Lease);
    expect(after).toMatchObject({ state: 'revoked', revokeReason: 'expired', revokeAttempts: 1 });
    expect(await revokeEvents(w.tid, lease.leaseId)).toEqual([
      { action: 'leases.revoke', outcome: 'allowed', actor_name: 'system' },
    ]);
    const metrics = await t.app.metrics.registry.getSingleMetricAsString('coffer_leases_total');
    expect(metrics).toMatch(/coffer_leases_total\{op="created"\} [1-9]/);
    expect(metrics).toMatch(/coffer_leases_total\{op="revoked"\} [1-9]/);
    expect(await corner.query('select role from revocations where role = $1', [lease.username])).toHaveLength(1);
    // A second pass, or a revocation asked for again, changes nothing.
    await t.app.jobs.leases.revokeDue();
    expect(expectOk(await w.asService('DELETE', `/v1/leases/${lease.leaseId}`), 200, Lease).state).toBe('revoked');
    expect(await revokeEvents(w.tid, lease.leaseId)).toHaveLength(1);
    expect(await corner.query('select role from revocations where role = $1', [lease.username])).toHaveLength(1);
  });

  it('renew extends the lease and the role’s VALID UNTIL, and stops at the maximum TTL', async () => {
    const w = await world({ defaultTtlSeconds: 60, maxTtlSeconds: 120 });
    const lease = await leased(t.app, w.service.token, w.name);
    const created = Date.parse(lease.expiresAt) - 60_000;
    expect(Date.parse(lease.maxExpiresAt) - created).toBeGreaterThanOrEqual(119_000);
    const validUntil = async () =>
      (
        await corner.query<{ v: Date }>('select rolvaliduntil as v from pg_roles where rolname = $1', [lease.username])
      )[0]?.v.toISOString();

    const first = expectOk(
      await w.asService('POST', `/v1/leases/${lease.leaseId}/renew`, { ttlSeconds: 90 }),
      200,
      Lease,
    );
    expect(Date.parse(first.expiresAt)).toBeGreaterThan(Date.parse(lease.expiresAt));
    expect(await validUntil()).toBe(first.expiresAt);

    const capped = expectOk(
      await w.asService('POST', `/v1/leases/${lease.leaseId}/renew`, { ttlSeconds: 3600 }),
      200,
      Lease,
    );
    expect(capped.expiresAt).toBe(lease.maxExpiresAt);
    expect(await validUntil()).toBe(lease.maxExpiresAt);
    const again = expectOk(await w.asService('POST', `/v1/leases/${lease.leaseId}/renew`), 200, Lease);
    expect(again.expiresAt).toBe(lease.maxExpiresAt);

    const { rows } = await owner.query<{ details: { capped: boolean; atMaximum: boolean; to: string } }>(
      `select details from coffer.audit_events where tenant_id = $1 and action = 'leases.renew' order by seq`,
      [w.tid],
    );
    expect(rows.map((r) => [r.details.capped, r.details.atMaximum])).toEqual([
      [false, false],
      [true, true],
      [false, true],
    ]);
    expect(rows.every((r) => Date.parse(r.details.to) <= Date.parse(lease.maxExpiresAt))).toBe(true);

    // Another service cannot renew it (nor learn it exists); an expired lease is not renewed.
    const other = await createIdentity(t.app, w.tenant.adminToken, {
      role: 'service',
      policies: [{ path: `dynamic/${w.name}`, capabilities: ['read'] }],
    });
    expectError(await sender(t.app, other.token)('POST', `/v1/leases/${lease.leaseId}/renew`), 404, 'not_found');
    expectError(await sender(t.app, other.token)('GET', `/v1/leases/${lease.leaseId}`), 404, 'not_found');
    await expire(lease.leaseId);
    expectError(await w.asService('POST', `/v1/leases/${lease.leaseId}/renew`), 409, 'conflict');
  });

  it('DELETE /v1/leases/:id revokes at once: the role is gone when it answers', async () => {
    const w = await world();
    const lease = await leased(t.app, w.service.token, w.name);
    const res = expectOk(await w.asService('DELETE', `/v1/leases/${lease.leaseId}`), 200, Lease);
    expect(res).toMatchObject({ state: 'revoked', revokeReason: 'revoked' });
    expect(await corner.roleExists(lease.username)).toBe(false);
    const events = await revokeEvents(w.tid, lease.leaseId);
    expect(events).toHaveLength(1);
    expect(events[0]?.actor_name).toBe(w.service.identity.name);
  });

  it('disabling or deleting an identity revokes its leases; DELETE /v1/leases?identity= revokes them at once', async () => {
    const w = await world();
    const a = await leased(t.app, w.service.token, w.name);
    const b = await leased(t.app, w.service.token, w.name);
    expect((await w.admin('PATCH', `/v1/identities/${w.service.identity.id}`, { disabled: true })).statusCode).toBe(
      200,
    );
    // Asked to end in the identity's own transaction, and revoked by the job (kicked at once).
    expect((await leaseRow(a.leaseId))?.state).toMatch(/revoking|revoked/);
    await t.app.jobs.leases.revokeDue();
    await eventually(
      async () => !(await corner.roleExists(a.username)) && !(await corner.roleExists(b.username)),
      5000,
      'roles dropped',
    );
    const page = expectOk(await w.admin('GET', `/v1/leases?identity=${w.service.identity.id}`), 200, LeasePage);
    expect(page.items.map((i) => [i.state, i.revokeReason])).toEqual([
      ['revoked', 'identity_disabled'],
      ['revoked', 'identity_disabled'],
    ]);
    for (const l of [a, b]) expect(await revokeEvents(w.tid, l.leaseId)).toHaveLength(1);

    const doomed = await createIdentity(t.app, w.tenant.adminToken, {
      role: 'service',
      policies: [{ path: `dynamic/${w.name}`, capabilities: ['read'] }],
    });
    const c = await leased(t.app, doomed.token, w.name);
    expect((await w.admin('DELETE', `/v1/identities/${doomed.identity.id}`)).statusCode).toBe(204);
    await t.app.jobs.leases.revokeDue();
    await eventually(async () => !(await corner.roleExists(c.username)), 5000, 'role dropped');
    expect(expectOk(await w.admin('GET', `/v1/leases/${c.leaseId}`), 200, Lease)).toMatchObject({
      state: 'revoked',
      revokeReason: 'identity_deleted',
      identityName: doomed.identity.name,
    });

    const third = await createIdentity(t.app, w.tenant.adminToken, {
      role: 'service',
      policies: [{ path: `dynamic/${w.name}`, capabilities: ['read'] }],
    });
    const d = await leased(t.app, third.token, w.name);
    const e = await leased(t.app, third.token, w.name);
    const result = expectOk(
      await w.admin('DELETE', `/v1/leases?identity=${third.identity.id}`),
      200,
      RevokeLeasesResult,
    );
    // Revoked before the answer, unless the job (kicked by the deletion above) had claimed one first.
    expect(result.requested).toBe(2);
    expect(result.revoked + result.pending).toBe(2);
    await eventually(
      async () => !(await corner.roleExists(d.username)) && !(await corner.roleExists(e.username)),
      5000,
      'roles dropped',
    );
    expectError(await w.admin('DELETE', '/v1/leases'), 400, 'validation_failed');
  });

  it('revoking a deployment revokes the leases made for it, and none other; a revoked deployment takes no lease', async () => {
    const w = await world();
    const deploymentId = await deployment(w);

    const mine = await leased(t.app, w.service.token, w.name, { deployment: deploymentId });
    const other = await leased(t.app, w.service.token, w.name);
    expect(expectOk(await w.admin('GET', `/v1/leases/${mine.leaseId}`), 200, Lease).deploymentId).toBe(deploymentId);
    const listed = expectOk(await w.admin('GET', `/v1/leases?deployment=${deploymentId}`), 200, LeasePage);
    expect(listed.items.map((l) => l.id)).toEqual([mine.leaseId]);
    // A deployment that is not there (or not the caller's to see) is a 404, before any role is made.
    expectError(
      await w.asService('POST', `/v1/dynamic/${w.name}/leases`, { deployment: '01912f80-0000-7000-8000-000000000000' }),
      404,
      'not_found',
    );

    const revoked = await w.admin('POST', `/v1/deployments/${deploymentId}/revoke`, { notes: 'laptop stolen' });
    expect(revoked.statusCode, revoked.body).toBe(200);
    expect((revoked.json() as { leasesRevoked: number }).leasesRevoked).toBe(1);
    await t.app.jobs.leases.revokeDue();
    await eventually(async () => !(await corner.roleExists(mine.username)), 5000, 'role dropped');
    expect(expectOk(await w.admin('GET', `/v1/leases/${mine.leaseId}`), 200, Lease)).toMatchObject({
      state: 'revoked',
      revokeReason: 'deployment_revoked',
    });
    expect(await revokeEvents(w.tid, mine.leaseId)).toHaveLength(1);
    // The lease made without the deployment still logs in.
    expect(await corner.roleExists(other.username)).toBe(true);
    expect(expectOk(await w.admin('GET', `/v1/leases/${other.leaseId}`), 200, Lease).state).toBe('active');

    const late = expectError(
      await w.asService('POST', `/v1/dynamic/${w.name}/leases`, { deployment: deploymentId }),
      409,
      'conflict',
    );
    expect(late.message).toContain('revoked');
    const { rows } = await owner.query('select count(*)::int as n from coffer.leases where deployment_id = $1', [
      deploymentId,
    ]);
    expect(rows[0].n).toBe(1);
  });

  it('DELETE /v1/leases?deployment= revokes the leases made for a deployment at once', async () => {
    const w = await world();
    const deploymentId = await deployment(w);
    const a = await leased(t.app, w.service.token, w.name, { deployment: deploymentId });
    const b = await leased(t.app, w.service.token, w.name);
    const result = expectOk(await w.admin('DELETE', `/v1/leases?deployment=${deploymentId}`), 200, RevokeLeasesResult);
    expect(result.requested).toBe(1);
    await eventually(async () => !(await corner.roleExists(a.username)), 5000, 'role dropped');
    expect(await corner.roleExists(b.username)).toBe(true);
    expect(expectOk(await w.admin('GET', `/v1/leases/${a.leaseId}`), 200, Lease).revokeReason).toBe(
      'deployment_revoked',
    );
  });

  it('a worker that dropped the role and died before recording it: the next one finds the role gone, and records one revocation', async () => {
    const w = await world();
    const lease = await leased(t.app, w.service.token, w.name);
    // A worker claims the lease and revokes the role in the target, then dies: its claim is still on the row.
    await owner.query(
      `update coffer.leases set state = 'revoking', revoke_reason = 'expired', claim_token = gen_random_uuid(),
         revoke_attempts = 1, next_attempt_at = now() + interval '1 hour' where id = $1`,
      [lease.leaseId],
    );
    const worker = new TargetConnections({ allowPrivate: true, allowPlaintext: true });
    try {
      expect(
        await worker.revoke(
          corner.adminUrl,
          parsedStatements(READ_ITEMS.revocationStatements, 'revocation'),
          lease.username,
        ),
      ).toBe('dropped');
    } finally {
      await worker.close();
    }
    // While its claim holds, nobody else touches the lease; once it lapses, the next worker takes over.
    await t.app.jobs.leases.revokeDue();
    expect((await leaseRow(lease.leaseId))?.state).toBe('revoking');
    await owner.query(`update coffer.leases set next_attempt_at = now() - interval '1 second' where id = $1`, [
      lease.leaseId,
    ]);
    await t.app.jobs.leases.revokeDue();
    expect(await leaseRow(lease.leaseId)).toMatchObject({ state: 'revoked', revoke_attempts: 2 });
    expect(await revokeEvents(w.tid, lease.leaseId)).toHaveLength(1);
    const { rows } = await owner.query<{ details: { role: string } }>(
      `select details from coffer.audit_events where tenant_id = $1 and action = 'leases.revoke'`,
      [w.tid],
    );
    expect(rows[0]?.details.role).toBe('already gone');
    // The revocation statements ran once, by the worker that died.
    expect(await corner.query('select role from revocations where role = $1', [lease.username])).toHaveLength(1);
  });

  it('a target that is down is retried with backoff, then reported revoke_failed (webhook, audit) and stays visible until it can be revoked', async () => {
    const w = await world();
    const hook = await w.admin('POST', '/v1/webhooks', {
      url: 'http://127.0.0.1:9/leases',
      events: ['lease.revoke_failed'],
    });
    expect(hook.statusCode).toBe(201);
    const lease = await leased(t.app, w.service.token, w.name);
    // The database goes away: the secret now names a port nothing listens on.
    const down = new URL(corner.adminUrl);
    down.port = '1';
    await w.admin('PUT', `/v1/secrets/${w.secretPath}`, { value: down.toString() });
    await expire(lease.leaseId);
    await t.app.jobs.leases.revokeDue();
    let row = await leaseRow(lease.leaseId);
    expect(row).toMatchObject({ state: 'revoking', revoke_attempts: 1 });
    const wait = ((row?.next_attempt_at?.getTime() ?? 0) - Date.now()) / 1000;
    expect(wait).toBeGreaterThan(2);
    expect(wait).toBeLessThan(8);
    // Not due again before the backoff is over.
    await t.app.jobs.leases.revokeDue();
    expect((await leaseRow(lease.leaseId))?.revoke_attempts).toBe(1);

    await makeRetryDue(lease.leaseId, 5);
    await t.app.jobs.leases.revokeDue();
    row = await leaseRow(lease.leaseId);
    expect(row).toMatchObject({ state: 'revoke_failed', revoke_attempts: 6 });
    const failed = expectOk(await w.admin('GET', '/v1/leases?state=revoke_failed'), 200, LeasePage).items;
    expect(failed.map((l) => l.id)).toEqual([lease.leaseId]);
    expect(failed[0]?.lastError).toMatch(/unavailable \(ECONNREFUSED\)/);
    const { rows: deliveries } = await owner.query<{ event: string; payload: Record<string, unknown> }>(
      'select event, payload from coffer.webhook_deliveries where tenant_id = $1',
      [w.tid],
    );
    expect(deliveries).toEqual([
      {
        event: 'lease.revoke_failed',
        payload: expect.objectContaining({ leaseId: lease.leaseId, username: lease.username, attempts: 6 }),
      },
    ]);
    expect(await revokeEvents(w.tid, lease.leaseId)).toEqual([
      { action: 'leases.revoke', outcome: 'error', actor_name: 'system' },
    ]);
    // Still retried, and reported only once.
    await makeRetryDue(lease.leaseId);
    await t.app.jobs.leases.revokeDue();
    expect((await leaseRow(lease.leaseId))?.state).toBe('revoke_failed');
    expect((await owner.query('select 1 from coffer.webhook_deliveries where tenant_id = $1', [w.tid])).rowCount).toBe(
      1,
    );

    // The database is back: the next attempt revokes it.
    await w.admin('PUT', `/v1/secrets/${w.secretPath}`, { value: corner.adminUrl });
    await makeRetryDue(lease.leaseId);
    await t.app.jobs.leases.revokeDue();
    expect((await leaseRow(lease.leaseId))?.state).toBe('revoked');
    expect(await corner.roleExists(lease.username)).toBe(false);
    expect((await revokeEvents(w.tid, lease.leaseId)).map((e) => e.outcome)).toEqual(['error', 'allowed']);
  });

  it('a role that cannot be dropped stays visible with the reason, and no one can log in with it', async () => {
    // No REVOKE in the revocation statements: the role's privilege on `items` keeps DROP ROLE from working.
    const w = await world({ revocationStatements: [] });
    const lease = await leased(t.app, w.service.token, w.name);
    const res = await w.asService('DELETE', `/v1/leases/${lease.leaseId}`);
    expect(res.statusCode).toBe(202);
    const body = Lease.parse(res.json());
    expect(body.state).toBe('revoking');
    expect(body.lastError).toMatch(/DROP ROLE.*cannot be dropped because some objects depend on it/);
    expect(await corner.roleExists(lease.username)).toBe(true);
    // Its logins were stopped before the drop was tried.
    expect(await asLease(corner.loginUrl(lease.username, lease.password), 'select 1')).toMatchObject({ code: '28000' });
  });
});

describe('hostile values', () => {
  it('a username template and an identity name full of quotes and semicolons cannot inject SQL', async () => {
    const canary = `canary_${corner.run}`;
    await corner.query(`create role ${canary}`);
    const w = await world({ usernameTemplate: `x";DROP TABLE items;--'{{identity}}_{{random}}` });
    const hostile = await createIdentity(t.app, w.tenant.adminToken, {
      role: 'service',
      name: `o'n"; DROP ROLE ${canary}; --`,
      policies: [{ path: `dynamic/${w.name}`, capabilities: ['read'] }],
    });
    const lease = await leased(t.app, hostile.token, w.name, { ttlSeconds: 60 });
    expect(lease.username).toMatch(/^x";DROP TABLE items;--'o'n"; DROP ROLE [a-z_]*_[a-z0-9]{12}$/);
    // The role has exactly that name, and nothing else was run.
    expect(await corner.roleExists(lease.username)).toBe(true);
    expect(await corner.roleExists(canary)).toBe(true);
    expect(
      await asLease(corner.loginUrl(lease.username, lease.password), 'select count(*)::int as n from items'),
    ).toEqual({
      rows: [{ n: 2 }],
    });
    expect(
      expectOk(await sender(t.app, hostile.token)('DELETE', `/v1/leases/${lease.leaseId}`), 200, Lease).state,
    ).toBe('revoked');
    expect(await corner.roleExists(lease.username)).toBe(false);
    expect(await corner.roleExists(canary)).toBe(true);
    expect(await corner.query('select count(*)::int as n from items')).toEqual([{ n: 2 }]);
    expect(await corner.query('select role from revocations where role = $1', [lease.username])).toHaveLength(1);
  });
});

describe('leak scan', () => {
  it('no lease password, admin URL or admin password in the app log (debug level), audit rows or lease rows', async () => {
    expect(passwords.length).toBeGreaterThan(10);
    const needles = [corner.adminUrl, corner.adminPassword, ...passwords];
    const { rows: audit } = await owner.query(
      `select * from coffer.audit_events where action like 'leases.%' or action like 'dynamic.%'`,
    );
    const { rows: leases } = await owner.query('select * from coffer.leases');
    const places = {
      'app log': t.logs.join('\n'),
      'audit rows': JSON.stringify(audit),
      'lease rows': JSON.stringify(leases),
    };
    const leaks = Object.entries(places).flatMap(([place, text]) =>
      needles.filter((n) => text.includes(n)).map((n) => `${n.slice(0, 6)}… in ${place}`),
    );
    expect(leaks).toEqual([]);
    expect(t.logs.length).toBeGreaterThan(0);
  });
});

describe('rows changed outside Coffer (a holder of coffer_app’s credentials)', () => {
  it('a backend whose statements were changed in the database is refused, never run', async () => {
    const w = await world();
    await owner.query(`update coffer.dynamic_backends set creation_statements = $2::jsonb where tenant_id = $1`, [
      w.tid,
      JSON.stringify(['CREATE ROLE {{name}} LOGIN CREATEDB PASSWORD {{password}}']),
    ]);
    const err = expectError(await w.asService('POST', `/v1/dynamic/${w.name}/leases`), 422, 'unprocessable');
    expect(err.message).toMatch(/does not match its seal/);
    expect(await corner.query('select 1 from pg_roles where rolcreatedb and rolname like $1', ['v\\_%'])).toEqual([]);
  });

  it('a revoked deployment made live again in the database takes no lease (integrity_error)', async () => {
    const w = await world();
    const deploymentId = await deployment(w);
    expect((await w.admin('POST', `/v1/deployments/${deploymentId}/revoke`, {})).statusCode).toBe(200);
    const lifted = await owner.query(
      'update coffer.deployments set revoked_at = null, revocation = null where id = $1',
      [deploymentId],
    );
    expect(lifted.rowCount).toBe(1);
    const refused = expectError(
      await w.asService('POST', `/v1/dynamic/${w.name}/leases`, { deployment: deploymentId }),
      500,
      'integrity_error',
    );
    const { rows } = await owner.query('select count(*)::int as n from coffer.leases where deployment_id = $1', [
      deploymentId,
    ]);
    // Refused before a lease row, so before any role: a role is made only for a lease row.
    expect(rows[0].n).toBe(0);
    const audited = await owner.query(
      'select outcome, error_code from coffer.audit_events where tenant_id = $1 and request_id = $2',
      [w.tid, refused.requestId],
    );
    expect(audited.rows).toEqual([{ outcome: 'error', error_code: 'integrity_error' }]);
  });

  it('a lease whose username was pointed at another role never drops that role', async () => {
    const w = await world();
    const victim = `victim_${corner.run}`;
    // A role the admin made itself, so the admin could drop it.
    await asLease(corner.adminUrl, `create role ${victim}`);
    const lease = await leased(t.app, w.service.token, w.name);
    await owner.query('update coffer.leases set username = $2 where id = $1', [lease.leaseId, victim]);
    await expire(lease.leaseId);
    await t.app.jobs.leases.revokeDue();
    const after = expectOk(await w.admin('GET', `/v1/leases/${lease.leaseId}`), 200, Lease);
    expect(after.state).toBe('revoking');
    expect(after.lastError).toMatch(/does not match its seal/);
    expect(await corner.roleExists(victim)).toBe(true);
    // Put back as it was, the lease is revoked as usual.
    await owner.query('update coffer.leases set username = $2 where id = $1', [lease.leaseId, lease.username]);
    await makeRetryDue(lease.leaseId);
    await t.app.jobs.leases.revokeDue();
    expect((await leaseRow(lease.leaseId))?.state).toBe('revoked');
    expect(await corner.roleExists(lease.username)).toBe(false);
  });
});
