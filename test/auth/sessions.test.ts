import { type Identity, SessionList, TokenResponse } from '@coffer/contracts';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, createIdentity, createTenant, rootToken, type TestTenant } from '../support/factories.ts';
import { mint, signingKey } from '../support/issuers.ts';
import { decodeJwt } from '../support/jwt.ts';
import { expectError, expectOk, ownerClient, sleep } from '../support/secrets.ts';
import { leaksIn } from '../support/security.ts';
import { machineKey, openSession, refreshBody, refreshSession, type TestSession } from '../support/sessions.ts';
import { createTestApp, type TestApp } from '../support/test-app.ts';

/**
 * People's sessions against the real server: a login that asks for a session gets a refresh credential bound to a
 * machine key, renewed (and replaced) by signed refreshes until an absolute end, ended by reuse, revocation, a
 * disabled identity or a new client secret, and never written to a log or an audit row.
 */

let t: TestApp;
/** The same database and keys, issuing one-second access tokens: a session must outlive its tokens. */
let short: TestApp;
let owner: pg.Client;
let root: string;
const SESSION_MAX_AGE = 7200;
const spent: string[] = [];

beforeAll(async () => {
  const env = { COFFER_SESSION_MAX_AGE_SECONDS: String(SESSION_MAX_AGE), COFFER_LOGIN_RATE_LIMIT_PER_MINUTE: '100000' };
  t = await createTestApp(env);
  short = await createTestApp({ ...env, COFFER_TOKEN_TTL_SECONDS: '1' });
  owner = await ownerClient();
  root = await rootToken(t.app);
});
afterAll(async () => {
  await owner?.end();
  await short?.close();
  await t?.close();
});

const whoami = (app: TestApp, token: string) => app.app.inject({ url: '/v1/auth/whoami', headers: bearer(token) });
const listSessions = (token: string, query = '') =>
  t.app.inject({ url: `/v1/sessions${query}`, headers: bearer(token) });
const keep = (s: TestSession) => {
  spent.push(s.refreshToken, s.accessToken);
  return s;
};

async function personOf(tenant: TestTenant) {
  const person = await createIdentity(t.app, tenant.adminToken, { role: 'service', name: 'alice-laptop' });
  spent.push(person.clientSecret, person.token);
  return person;
}

describe('sessions', () => {
  it('opens a session at login, and refreshes it past the access token’s lifetime until its absolute end', async () => {
    const tenant = await createTenant(t.app, root);
    const person = await personOf(tenant);
    const s = keep(await openSession(short.app, person.identity.clientId, person.clientSecret, 'alice@laptop'));
    const end = Date.parse(s.expiresAt);
    expect(Math.abs(end - (Date.now() + SESSION_MAX_AGE * 1000))).toBeLessThan(60_000);
    expect(decodeJwt(s.accessToken).payload).toMatchObject({ sid: s.id, sub: person.identity.id });
    expect(s.refreshToken).toMatch(/^coffer_rt_1_/);

    // Wait out the one-second token (and the verifier's clock tolerance).
    const until = Date.now() + 15_000;
    while ((await whoami(t, s.accessToken)).statusCode === 200 && Date.now() < until) await sleep(500);
    expectError(await whoami(t, s.accessToken), 401, 'unauthorized');

    for (let i = 2; i <= 3; i++) {
      const res = await refreshSession(short.app, s);
      const body = expectOk(res, 200, TokenResponse);
      keep(s);
      expect(body.session?.expiresAt).toBe(s.expiresAt); // a refresh never extends the session
      expect(s.refreshToken).toMatch(new RegExp(`^coffer_rt_${i}_`));
      expect(body.expiresIn).toBe(1);
      expect((await whoami(t, s.accessToken)).statusCode).toBe(200);
    }

    const mine = expectOk(await listSessions(s.accessToken), 200, SessionList).items;
    expect(mine).toEqual([
      expect.objectContaining({
        id: s.id,
        identityId: person.identity.id,
        identityName: 'alice-laptop',
        name: 'alice@laptop',
        method: 'client_secret',
        state: 'active',
        current: true,
        refreshes: 2,
        revokedAt: null,
      }),
    ]);
    expect(JSON.stringify(mine)).not.toContain('coffer_rt_');

    // Past the absolute end (moved there by the owner, rather than waited for), nothing renews it.
    await owner.query(`update coffer.sessions set expires_at = now() - interval '1 second' where id = $1`, [s.id]);
    expectError(await refreshSession(short.app, s), 401, 'unauthorized');
    expectError(await whoami(t, s.accessToken), 401, 'unauthorized');
    const { rows } = await owner.query<{ details: Record<string, string> }>(
      `select details from coffer.audit_events where resource = $1 and action = 'auth.refresh' and outcome = 'denied'`,
      [`sessions/${s.id}`],
    );
    expect(rows.map((r) => r.details.reason)).toEqual(['expired']);
  }, 60_000);

  it('ends the whole session when a rotated refresh credential is used again (reuse detection)', async () => {
    const tenant = await createTenant(t.app, root);
    const person = await personOf(tenant);
    const s = keep(await openSession(t.app, person.identity.clientId, person.clientSecret));
    const copied = { ...s };
    expectOk(await refreshSession(t.app, s), 200, TokenResponse);
    keep(s);
    expect((await whoami(t, s.accessToken)).statusCode).toBe(200);

    // The earlier credential, validly signed: two copies are in use, so neither may go on.
    expectError(await refreshSession(t.app, copied, refreshBody(copied)), 401, 'unauthorized');
    expectError(await refreshSession(t.app, s), 401, 'unauthorized');
    expectError(await whoami(t, s.accessToken), 401, 'unauthorized');

    const [session] = expectOk(await listSessions(tenant.adminToken, '?all=true'), 200, SessionList).items;
    expect(session).toMatchObject({ id: s.id, state: 'revoked', revokedReason: 'refresh_reuse' });
    const { rows } = await owner.query<{ outcome: string; details: Record<string, string> }>(
      `select outcome, details from coffer.audit_events where resource = $1 and action = 'auth.refresh' order by seq`,
      [`sessions/${s.id}`],
    );
    expect(rows.map((r) => [r.outcome, r.details.reason ?? null, r.details.sessionRevoked ?? null])).toEqual([
      ['allowed', null, null],
      ['denied', 'refresh_reuse', 'true'],
      ['denied', 'revoked', null],
    ]);
  });

  it('refuses a refresh that the machine key did not sign, and such a refusal changes nothing', async () => {
    const tenant = await createTenant(t.app, root);
    const person = await personOf(tenant);
    const s = keep(await openSession(t.app, person.identity.clientId, person.clientSecret));
    const thief = machineKey();
    const badSignature = refreshBody(s);
    badSignature.signature = refreshBody(s, { key: thief.privateKey }).signature;
    expectError(await refreshSession(t.app, s, refreshBody(s, { key: thief.privateKey })), 401, 'unauthorized');
    expectError(await refreshSession(t.app, s, badSignature), 401, 'unauthorized');
    // A signature of another credential, or of a moment long gone (a captured request, replayed), is no better.
    const other = refreshBody({ ...s, refreshToken: `coffer_rt_1_${'A'.repeat(43)}` });
    expectError(await refreshSession(t.app, s, { ...refreshBody(s), signature: other.signature }), 401, 'unauthorized');
    const stale = new Date(Date.now() - 10 * 60_000).toISOString();
    expectError(await refreshSession(t.app, s, refreshBody(s, { signedAt: stale })), 401, 'unauthorized');
    // An older credential without the key cannot end the session either (that needs a valid signature).
    expectError(
      await refreshSession(t.app, s, refreshBody(s, { key: thief.privateKey, refreshToken: 'coffer_rt_1_x' })),
      400,
      'validation_failed',
    );
    // The owner of the key still refreshes.
    expectOk(await refreshSession(t.app, s), 200, TokenResponse);
    keep(s);
    const { rows } = await owner.query<{ details: Record<string, string> }>(
      `select details from coffer.audit_events where resource = $1 and outcome = 'denied' order by seq`,
      [`sessions/${s.id}`],
    );
    expect(rows.map((r) => r.details.reason)).toEqual([
      'bad_signature',
      'bad_signature',
      'bad_signature',
      'stale_signature',
    ]);
    // An unknown session answers the same 401.
    const ghost = { ...s, id: '0190a0b0-0000-7000-8000-000000000000' };
    expectError(await refreshSession(t.app, ghost, refreshBody(ghost)), 401, 'unauthorized');
  });

  it('is revocable by its owner and by a tenant admin, at once, and by nobody else', async () => {
    const tenant = await createTenant(t.app, root);
    const other = await createTenant(t.app, root);
    const person = await personOf(tenant);
    const colleague = await personOf(tenant);
    const mine = keep(await openSession(t.app, person.identity.clientId, person.clientSecret));
    const theirs = keep(await openSession(t.app, colleague.identity.clientId, colleague.clientSecret));

    const revoke = (token: string, id: string) =>
      t.app.inject({ method: 'DELETE', url: `/v1/sessions/${id}`, headers: bearer(token) });
    // Another identity of the tenant, and another tenant's admin: as if it did not exist.
    expectError(await revoke(mine.accessToken, theirs.id), 404, 'not_found');
    expectError(await revoke(other.adminToken, theirs.id), 404, 'not_found');
    expectError(await listSessions(mine.accessToken, '?all=true'), 403, 'forbidden');
    expectError(await listSessions(mine.accessToken, `?identityId=${colleague.identity.id}`), 403, 'forbidden');
    expect(expectOk(await listSessions(other.adminToken, '?all=true'), 200, SessionList).items).toEqual([]);

    // Its owner (coffer logout): the refresh credential and the access token stop on their next use.
    expect((await revoke(mine.accessToken, mine.id)).statusCode).toBe(204);
    expectError(await whoami(t, mine.accessToken), 401, 'unauthorized');
    expectError(await refreshSession(t.app, mine), 401, 'unauthorized');

    // The tenant admin ends the colleague's.
    expect((await revoke(tenant.adminToken, theirs.id)).statusCode).toBe(204);
    expectError(await refreshSession(t.app, theirs), 401, 'unauthorized');
    const all = expectOk(await listSessions(tenant.adminToken, '?all=true&state=revoked'), 200, SessionList).items;
    expect(all.map((x) => [x.id, x.revokedReason]).sort()).toEqual(
      [
        [mine.id, 'revoked'],
        [theirs.id, 'revoked'],
      ].sort(),
    );
    const { rows } = await owner.query<{ outcome: string; resource: string }>(
      `select outcome, resource from coffer.audit_events where action = 'sessions.revoke' and tenant_id = $1 order by seq`,
      [tenant.tenant.id],
    );
    // The refused attempt is in the tenant's chain too (the other tenant's is in its own).
    expect(rows.map((r) => [r.outcome, r.resource])).toEqual([
      ['error', `sessions/${theirs.id}`],
      ['allowed', `sessions/${mine.id}`],
      ['allowed', `sessions/${theirs.id}`],
    ]);
  });

  it('ends when its identity is disabled or gets a new client secret', async () => {
    const tenant = await createTenant(t.app, root);
    const person = await personOf(tenant);
    const patch = (body: Record<string, unknown>) =>
      t.app.inject({
        method: 'PATCH',
        url: `/v1/identities/${person.identity.id}`,
        headers: bearer(tenant.adminToken),
        payload: body,
      });
    const first = keep(await openSession(t.app, person.identity.clientId, person.clientSecret));
    expect((await patch({ disabled: true })).statusCode).toBe(200);
    expectError(await refreshSession(t.app, first), 401, 'unauthorized');
    expect((await patch({ disabled: false })).statusCode).toBe(200);

    const second = keep(await openSession(t.app, person.identity.clientId, person.clientSecret));
    const rotated = await t.app.inject({
      method: 'POST',
      url: `/v1/identities/${person.identity.id}/secret`,
      headers: bearer(tenant.adminToken),
    });
    expect(rotated.statusCode).toBe(200);
    spent.push((rotated.json() as { clientSecret: string }).clientSecret);
    expectError(await refreshSession(t.app, second), 401, 'unauthorized');

    const items = expectOk(
      await listSessions(tenant.adminToken, `?identityId=${person.identity.id}`),
      200,
      SessionList,
    ).items;
    expect(items.map((x) => [x.id, x.state, x.revokedReason])).toEqual([
      [second.id, 'revoked', 'identity_changed'],
      [first.id, 'revoked', 'identity_changed'],
    ]);
  });

  it('opens a session from a federated login too, whose refreshes keep the templated claims', async () => {
    const tenant = await createTenant(t.app, root);
    const key = await signingKey('ES256');
    const iss = `https://ci-${tenant.tenant.slug}.example`;
    const admin = (method: 'POST' | 'PUT', url: string, payload: unknown) =>
      t.app.inject({ method, url, headers: bearer(tenant.adminToken), payload: payload as Record<string, unknown> });
    expect(
      (await admin('POST', '/v1/trust/issuers', { name: 'ci', issuer: iss, jwks: { keys: [key.publicJwk] } }))
        .statusCode,
    ).toBe(201);
    const created = await admin('POST', '/v1/identities', {
      name: 'deployer',
      role: 'service',
      policies: [{ path: 'sandbox/{{claims.sandbox}}/*', capabilities: ['read'] }],
      federation: [{ issuer: 'ci', subject: 'deploy' }],
    });
    expect(created.statusCode).toBe(201);
    const identity = (created.json() as { identity: Identity }).identity;
    expect((await admin('PUT', '/v1/secrets/sandbox/sbx-9/K', { value: 'nine' })).statusCode).toBe(201);
    const subjectToken = await mint(key, { iss, aud: `coffer:${tenant.tenant.slug}`, sub: 'deploy', sandbox: 'sbx-9' });
    const m = machineKey();
    const res = await t.app.inject({
      method: 'POST',
      url: '/v1/auth/token',
      payload: { identity: identity.clientId, subjectToken, session: { publicKey: m.publicKey } },
    });
    const answer = expectOk(res, 200, TokenResponse);
    const s = keep({
      id: answer.session?.id as string,
      refreshToken: answer.session?.refreshToken as string,
      accessToken: answer.accessToken,
      expiresAt: answer.session?.expiresAt as string,
      ...m,
    });
    expectOk(await refreshSession(t.app, s), 200, TokenResponse);
    keep(s);
    expect(decodeJwt(s.accessToken).payload).toMatchObject({ sid: s.id, clm: { sandbox: 'sbx-9' } });
    const read = await t.app.inject({ url: '/v1/secrets/sandbox/sbx-9/K', headers: bearer(s.accessToken) });
    expect(read.statusCode, read.body).toBe(200);
    const [listed] = expectOk(await listSessions(s.accessToken), 200, SessionList).items;
    expect(listed).toMatchObject({ method: 'federation', current: true, refreshes: 1 });
    spent.push(subjectToken);
  });

  it('refuses a malformed session request, and opens none for a failed login', async () => {
    const tenant = await createTenant(t.app, root);
    const person = await personOf(tenant);
    const login = (payload: Record<string, unknown>) =>
      t.app.inject({ method: 'POST', url: '/v1/auth/token', payload });
    const { publicKey } = machineKey();
    expectError(
      await login({
        clientId: person.identity.clientId,
        clientSecret: person.clientSecret,
        session: { publicKey: 'x' },
      }),
      400,
      'validation_failed',
    );
    expectError(
      await login({
        clientId: person.identity.clientId,
        clientSecret: person.clientSecret,
        session: { publicKey, extra: 1 },
      }),
      400,
      'validation_failed',
    );
    expectError(
      await login({ clientId: person.identity.clientId, clientSecret: 'wrong', session: { publicKey } }),
      401,
      'unauthorized',
    );
    const { rows } = await owner.query<{ n: number }>(
      'select count(*)::int as n from coffer.sessions where identity_id = $1',
      [person.identity.id],
    );
    expect(rows[0]?.n).toBe(0);
  });

  it('writes no refresh credential, access token or client secret to a log line or an audit row', async () => {
    const tenant = await createTenant(t.app, root);
    const person = await personOf(tenant);
    const s = keep(await openSession(t.app, person.identity.clientId, person.clientSecret));
    const old = { ...s };
    expectOk(await refreshSession(t.app, s), 200, TokenResponse);
    keep(s);
    expectError(await refreshSession(t.app, old, refreshBody(old)), 401, 'unauthorized');
    const { rows } = await owner.query<{ row: string }>(
      `select row_to_json(a)::text as row from coffer.audit_events a where tenant_id = $1`,
      [tenant.tenant.id],
    );
    expect(rows.length).toBeGreaterThan(3);
    const secrets = spent.filter((x) => x.length > 20);
    expect(leaksIn(rows.map((r) => r.row).join('\n'), secrets)).toEqual([]);
    expect(leaksIn([...t.logs, ...short.logs].join('\n'), secrets)).toEqual([]);
    // The stored hash is not the credential either.
    const { rows: stored } = await owner.query<{ row: string }>(
      `select row_to_json(s)::text as row from coffer.sessions s where tenant_id = $1`,
      [tenant.tenant.id],
    );
    expect(leaksIn(stored.map((r) => r.row).join('\n'), secrets)).toEqual([]);
  });
});
