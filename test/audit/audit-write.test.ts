import { randomBytes } from 'node:crypto';
import {
  type CreateIdentityResponse,
  type CreateTenantResponse,
  PLATFORM_TENANT_ID,
  type TokenResponse,
  type WhoAmI,
} from '@coffer/contracts';
import type { LightMyRequestResponse } from 'fastify';
import type pg from 'pg';
import { describe, expect, inject, it } from 'vitest';
import type { AuditEvent } from '../../apps/api/src/audit/audit.types.ts';
import { type AuditRow, auditRowsFor, auditRowsOf, firstBrokenLink, keyedDigest } from '../support/audit.ts';
import { bearer, createIdentity, createTenant, rootToken, type TestTenant } from '../support/factories.ts';
import { ownerSuite } from '../support/suite.ts';
import type { TestApp } from '../support/test-app.ts';

let t: TestApp;
let owner: pg.Client;
ownerSuite((s) => {
  ({ t, owner } = s);
});

const newRequestId = () => `audit-${randomBytes(8).toString('hex')}`;

interface Sent {
  res: LightMyRequestResponse;
  requestId: string;
  events: AuditRow[];
}

/** Sends a request under a fresh request id and returns the audit rows written under that id. */
async function send(
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
  url: string,
  token: string | null,
  payload?: Record<string, unknown>,
): Promise<Sent> {
  const requestId = newRequestId();
  const res = await t.app.inject({
    method,
    url,
    headers: { 'x-request-id': requestId, 'user-agent': 'coffer-audit-test/1', ...(token ? bearer(token) : {}) },
    ...(payload ? { payload } : {}),
  });
  expect(res.headers['x-request-id']).toBe(requestId);
  return { res, requestId, events: await auditRowsFor(owner, requestId) };
}

const adminIdOf = async (tenant: TestTenant) =>
  ((await t.app.inject({ url: '/v1/auth/whoami', headers: bearer(tenant.adminToken) })).json() as WhoAmI).identityId;

/** The one event of a request, checked for the fields every event carries. */
function single(s: Sent, tenantId: string): AuditRow {
  expect(s.events, `events of ${s.requestId}`).toHaveLength(1);
  const e = s.events[0] as AuditRow;
  expect(e.tenant_id).toBe(tenantId);
  expect(e.request_id).toBe(s.requestId);
  expect(e.source_ip).toBe('127.0.0.1');
  expect(e.user_agent).toBe('coffer-audit-test/1');
  expect(Math.abs(e.occurred_at.getTime() - Date.now())).toBeLessThan(60_000);
  return e;
}

describe('audit events written per request', () => {
  it('login allowed, and denied for a wrong secret, an unknown client and a disabled identity', async () => {
    const tenant = await createTenant(t.app);
    const adminId = await adminIdOf(tenant);
    const { clientId, clientSecret } = tenant.admin;

    const ok = await send('POST', '/v1/auth/token', null, { clientId, clientSecret });
    expect(ok.res.statusCode).toBe(200);
    expect(single(ok, tenant.tenant.id)).toMatchObject({
      action: 'auth.token',
      outcome: 'allowed',
      actor_id: adminId,
      actor_name: 'admin',
      resource: `identities/${adminId}`,
      error_code: null,
      details: { clientId },
    });

    const wrong = await send('POST', '/v1/auth/token', null, { clientId, clientSecret: `${clientSecret}-nope` });
    expect(wrong.res.statusCode).toBe(401);
    expect(single(wrong, tenant.tenant.id)).toMatchObject({
      action: 'auth.token',
      outcome: 'denied',
      actor_id: adminId,
      error_code: 'unauthorized',
      details: { clientId, reason: 'wrong_secret' },
    });

    const unknownId = `coffer_ci_unknown${randomBytes(4).toString('hex')}`;
    const unknown = await send('POST', '/v1/auth/token', null, { clientId: unknownId, clientSecret: 'whatever' });
    expect(unknown.res.statusCode).toBe(401);
    expect(single(unknown, PLATFORM_TENANT_ID)).toMatchObject({
      action: 'auth.token',
      outcome: 'denied',
      actor_id: null,
      resource: 'identities/unknown',
      error_code: 'unauthorized',
      // An id that matches nobody is kept as a keyed fingerprint: it might be a secret typed into the wrong field.
      details: { clientIdFingerprint: expect.stringMatching(/^[0-9a-f]{32}$/), reason: 'unknown_client' },
    });
    expect(JSON.stringify(single(unknown, PLATFORM_TENANT_ID))).not.toContain(unknownId);

    const svc = await createIdentity(t.app, tenant.adminToken, { role: 'service' });
    await send('PATCH', `/v1/identities/${svc.identity.id}`, tenant.adminToken, { disabled: true });
    const disabled = await send('POST', '/v1/auth/token', null, {
      clientId: svc.identity.clientId,
      clientSecret: svc.clientSecret,
    });
    expect(disabled.res.statusCode).toBe(401);
    expect(single(disabled, tenant.tenant.id)).toMatchObject({
      outcome: 'denied',
      actor_id: svc.identity.id,
      details: { reason: 'disabled' },
    });
  });

  it('identity create, read, list, update, rotate and delete', async () => {
    const tenant = await createTenant(t.app);
    const adminId = await adminIdOf(tenant);
    const actor = { actor_id: adminId, actor_name: 'admin', outcome: 'allowed', error_code: null };

    const create = await send('POST', '/v1/identities', tenant.adminToken, { name: 'audited', role: 'service' });
    expect(create.res.statusCode).toBe(201);
    const id = (create.res.json() as CreateIdentityResponse).identity.id;
    expect(single(create, tenant.tenant.id)).toMatchObject({
      ...actor,
      action: 'identities.create',
      resource: `identities/${id}`,
      details: { role: 'service', name: 'audited' },
    });

    const read = await send('GET', `/v1/identities/${id}`, tenant.adminToken);
    expect(single(read, tenant.tenant.id)).toMatchObject({
      ...actor,
      action: 'identities.read',
      resource: `identities/${id}`,
    });

    const list = await send('GET', '/v1/identities?limit=5', tenant.adminToken);
    expect(single(list, tenant.tenant.id)).toMatchObject({
      ...actor,
      action: 'identities.list',
      resource: 'identities',
    });

    const update = await send('PATCH', `/v1/identities/${id}`, tenant.adminToken, {
      name: 'renamed',
      policies: [{ path: 'sandbox/a/*', capabilities: ['read'] }],
    });
    expect(update.res.statusCode).toBe(200);
    expect(single(update, tenant.tenant.id)).toMatchObject({
      ...actor,
      action: 'identities.update',
      resource: `identities/${id}`,
      details: { fields: 'name,policies' },
    });

    const rotate = await send('POST', `/v1/identities/${id}/secret`, tenant.adminToken);
    expect(rotate.res.statusCode).toBe(200);
    expect(single(rotate, tenant.tenant.id)).toMatchObject({
      ...actor,
      action: 'identities.rotate_secret',
      resource: `identities/${id}`,
    });

    const del = await send('DELETE', `/v1/identities/${id}`, tenant.adminToken);
    expect(del.res.statusCode).toBe(204);
    expect(single(del, tenant.tenant.id)).toMatchObject({
      ...actor,
      action: 'identities.delete',
      resource: `identities/${id}`,
    });

    const gone = await send('GET', `/v1/identities/${id}`, tenant.adminToken);
    expect(gone.res.statusCode).toBe(404);
    expect(single(gone, tenant.tenant.id)).toMatchObject({
      actor_id: adminId,
      action: 'identities.read',
      outcome: 'error',
      error_code: 'not_found',
      resource: `identities/${id}`,
    });
  });

  it('tenant create (platform chain and the new tenant chain) and tenant list', async () => {
    const root = await rootToken(t.app);
    const slug = `audit-${randomBytes(4).toString('hex')}`;
    const create = await send('POST', '/v1/tenants', root, { slug, name: 'Audited' });
    expect(create.res.statusCode).toBe(201);
    const tenantId = (create.res.json() as CreateTenantResponse).tenant.id;
    expect(create.events).toHaveLength(2);
    const [platformEvent, tenantEvent] = create.events.sort((a, b) =>
      a.tenant_id === PLATFORM_TENANT_ID ? -1 : b.tenant_id === PLATFORM_TENANT_ID ? 1 : 0,
    );
    expect(platformEvent).toMatchObject({
      tenant_id: PLATFORM_TENANT_ID,
      action: 'tenants.create',
      outcome: 'allowed',
      actor_name: 'root',
      resource: `tenants/${tenantId}`,
      details: { slug },
    });
    expect(tenantEvent).toMatchObject({
      tenant_id: tenantId,
      action: 'identities.create',
      actor_name: 'root',
      seq: '1',
      details: { role: 'admin', name: 'admin' },
    });

    const list = await send('GET', '/v1/tenants?limit=2', root);
    expect(single(list, PLATFORM_TENANT_ID)).toMatchObject({ action: 'tenants.list', actor_name: 'root' });
  });

  it('a 403 is recorded as denied in the tenant chain, with the caller as actor', async () => {
    const tenant = await createTenant(t.app);
    const svc = await createIdentity(t.app, tenant.adminToken, { role: 'service' });
    const denied = await send('GET', '/v1/identities', svc.token);
    expect(denied.res.statusCode).toBe(403);
    expect(single(denied, tenant.tenant.id)).toMatchObject({
      action: 'identities.list',
      outcome: 'denied',
      error_code: 'forbidden',
      actor_id: svc.identity.id,
      resource: 'identities',
    });
  });

  it('a 401 is recorded as denied: in the platform chain without a token, in the tenant chain for a revoked one', async () => {
    const anon = await send('GET', '/v1/identities/00000000-0000-4000-8000-000000000001', null);
    expect(anon.res.statusCode).toBe(401);
    expect(single(anon, PLATFORM_TENANT_ID)).toMatchObject({
      action: 'identities.read',
      outcome: 'denied',
      error_code: 'unauthorized',
      actor_id: null,
      resource: 'identities/00000000-0000-4000-8000-000000000001',
    });

    const tenant = await createTenant(t.app);
    const svc = await createIdentity(t.app, tenant.adminToken, { role: 'auditor' });
    await send('DELETE', `/v1/identities/${svc.identity.id}`, tenant.adminToken);
    const revoked = await send('GET', '/v1/auth/whoami', svc.token);
    expect(revoked.res.statusCode).toBe(401);
    expect(single(revoked, tenant.tenant.id)).toMatchObject({
      action: 'auth.whoami',
      outcome: 'denied',
      error_code: 'unauthorized',
      actor_id: svc.identity.id,
    });
  });

  it('a server-generated request id is the one recorded', async () => {
    const tenant = await createTenant(t.app);
    const res = await t.app.inject({ url: '/v1/identities', headers: bearer(tenant.adminToken) });
    expect(res.statusCode).toBe(200);
    const requestId = res.headers['x-request-id'];
    expect(typeof requestId).toBe('string');
    const events = await auditRowsFor(owner, requestId as string);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ tenant_id: tenant.tenant.id, action: 'identities.list' });
  });

  it('a request refused by validation is recorded as an error', async () => {
    const tenant = await createTenant(t.app);
    const bad = await send('POST', '/v1/identities', tenant.adminToken, { name: '', role: 'root' });
    expect(bad.res.statusCode).toBe(400);
    expect(single(bad, tenant.tenant.id)).toMatchObject({
      action: 'identities.create',
      outcome: 'error',
      error_code: 'validation_failed',
    });
  });
});

describe('no secret in the audit log or the logs', () => {
  /** Everything secret a busy tenant produces: client secrets, access tokens, the root secret. */
  async function busyTenant(): Promise<{ tenant: TestTenant; secrets: string[] }> {
    const root = await rootToken(t.app);
    const tenant = await createTenant(t.app, root);
    const svc = await createIdentity(t.app, tenant.adminToken, { role: 'service' });
    const rot = await send('POST', `/v1/identities/${svc.identity.id}/secret`, tenant.adminToken);
    const rotated = (rot.res.json() as { clientSecret: string }).clientSecret;
    const login = await send('POST', '/v1/auth/token', null, {
      clientId: svc.identity.clientId,
      clientSecret: rotated,
    });
    const token = (login.res.json() as TokenResponse).accessToken;
    await send('GET', '/v1/auth/whoami', token);
    await send('GET', '/v1/auth/whoami', svc.token); // revoked by the rotation
    await send('POST', '/v1/auth/token', null, { clientId: svc.identity.clientId, clientSecret: svc.clientSecret });
    await send('GET', '/v1/identities', `${tenant.adminToken}x`);
    return {
      tenant,
      secrets: [
        inject('rootSecret'),
        root,
        tenant.admin.clientSecret,
        tenant.adminToken,
        svc.clientSecret,
        svc.token,
        rotated,
        token,
      ],
    };
  }

  it('no audit row holds a client secret, an access token or the root secret, in any column', async () => {
    const { secrets } = await busyTenant();
    const { rows } = await owner.query<{ row: string }>('select e::text as row from coffer.audit_events e');
    expect(rows.length).toBeGreaterThan(0);
    const all = rows.map((r) => r.row).join('\n');
    for (const s of secrets) {
      expect(all).not.toContain(s);
      // A token's signature alone would be as bad as the token.
      const signature = s.split('.')[2];
      if (signature) expect(all).not.toContain(signature);
    }
  });

  // Regression test: this was a bug the first version of this suite found.
  it('a client secret typed into the clientId field does not reach the audit log', async () => {
    const tenant = await createTenant(t.app);
    const swapped = await send('POST', '/v1/auth/token', null, {
      clientId: tenant.admin.clientSecret,
      clientSecret: tenant.admin.clientId,
    });
    expect(swapped.res.statusCode).toBe(401);
    expect(swapped.events).toHaveLength(1);
    const { rows } = await owner.query<{ row: string }>(
      'select e::text as row from coffer.audit_events e where request_id = $1',
      [swapped.requestId],
    );
    expect(rows[0]?.row).not.toContain(tenant.admin.clientSecret);
  });

  it('the app logs never hold a client secret or a token', async () => {
    const before = t.logs.length;
    const { secrets } = await busyTenant();
    const lines = t.logs.slice(before);
    // The logs did capture these requests (so the check below looks at something).
    expect(lines.length).toBeGreaterThan(10);
    expect(lines.some((l) => l.includes('"requestId":"audit-'))).toBe(true);
    const all = t.logs.join('\n');
    for (const s of secrets) expect(all).not.toContain(s);
  });
});

describe('the hash chain', () => {
  it("a tenant's events form a valid chain from 32 zero bytes, one link per event", async () => {
    const tenant = await createTenant(t.app);
    const svc = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      policies: [{ path: 'shared/**', capabilities: ['read', 'list'] }],
    });
    // A mix of in-transaction events (changes) and batched ones (reads, denials, logins), some concurrent.
    await Promise.all([
      send('GET', `/v1/identities/${svc.identity.id}`, tenant.adminToken),
      send('GET', '/v1/identities', tenant.adminToken),
      send('GET', '/v1/identities', svc.token),
      send('PATCH', `/v1/identities/${svc.identity.id}`, tenant.adminToken, { name: 'chained' }),
      send('POST', '/v1/auth/token', null, { clientId: svc.identity.clientId, clientSecret: 'wrong' }),
    ]);
    await send('POST', `/v1/identities/${svc.identity.id}/secret`, tenant.adminToken);

    const rows = await auditRowsOf(owner, tenant.tenant.id);
    // create tenant(1) + admin login(1) + create identity(1) + service login(1) + 5 + rotate(1)
    expect(rows).toHaveLength(10);
    expect(rows[0]?.prev_hash.equals(Buffer.alloc(32))).toBe(true);
    expect(firstBrokenLink(rows)).toBeNull();

    const head = await owner.query<{ seq: string; hash: Buffer }>(
      'select seq, hash from coffer.audit_heads where tenant_id = $1',
      [tenant.tenant.id],
    );
    expect(head.rows[0]?.seq).toBe('10');
    expect(head.rows[0]?.hash.equals(rows.at(-1)?.hash ?? Buffer.alloc(0))).toBe(true);
  });

  it('the verifier notices an edited, a removed and a reordered event (so the check above can fail)', async () => {
    const tenant = await createTenant(t.app);
    await createIdentity(t.app, tenant.adminToken, { role: 'auditor' });
    const rows = await auditRowsOf(owner, tenant.tenant.id);
    expect(rows.length).toBeGreaterThanOrEqual(3);
    expect(firstBrokenLink(rows)).toBeNull();

    const edited = (e: AuditEvent) => keyedDigest(e.action === 'auth.token' ? { ...e, outcome: 'denied' } : e);
    expect(firstBrokenLink(rows, edited)?.reason).toMatch(/digest/);
    expect(firstBrokenLink([rows[0], rows[2]] as AuditRow[])?.reason).toMatch(/seq/);
    expect(firstBrokenLink([rows[1], rows[0], ...rows.slice(2)] as AuditRow[])).not.toBeNull();
  });

  it('the platform chain holds too, while every test writes to it', async () => {
    const rows = await auditRowsOf(owner, PLATFORM_TENANT_ID);
    expect(rows.length).toBeGreaterThan(0);
    expect(firstBrokenLink(rows)).toBeNull();
  });
});
