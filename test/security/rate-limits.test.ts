import { randomBytes } from 'node:crypto';
import { ErrorEnvelope, SecretWithValue, Tenant } from '@coffer/contracts';
import type { LightMyRequestResponse } from 'fastify';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { auditRowsFor } from '../support/audit.ts';
import {
  bearer,
  createIdentity,
  createTenant,
  rootToken,
  type TestIdentity,
  type TestTenant,
} from '../support/factories.ts';
import { ownerClient, sleep } from '../support/secrets.ts';
import { createTestApp, type TestApp } from '../support/test-app.ts';

/**
 * Request rate limits (per identity per second, a tenant's own limit overriding the server's) and login throttling
 * (failed logins per client id, logins per source address per minute). Each limit gets an app of its own with a small
 * number, so the counters are this file's alone; tenants and identities are made through a separate app with the
 * default limits.
 */

let setup: TestApp;
let owner: pg.Client;
let root: string;

beforeAll(async () => {
  setup = await createTestApp();
  owner = await ownerClient();
  root = await rootToken(setup.app);
});
afterAll(async () => {
  await owner?.end();
  await setup?.close();
});

const whoami = (app: TestApp, token: string) => app.app.inject({ url: '/v1/auth/whoami', headers: bearer(token) });

const statusesOf = (responses: LightMyRequestResponse[]) => responses.map((r) => r.statusCode);

function expectRateLimited(res: LightMyRequestResponse, maxRetryAfter: number): number {
  expect(res.statusCode, res.body).toBe(429);
  const err = ErrorEnvelope.parse(res.json()).error;
  expect(err.code).toBe('rate_limited');
  expect(err.requestId).toBe(res.headers['x-request-id']);
  const retryAfter = Number(res.headers['retry-after']);
  expect(Number.isInteger(retryAfter)).toBe(true);
  expect(retryAfter).toBeGreaterThanOrEqual(1);
  expect(retryAfter).toBeLessThanOrEqual(maxRetryAfter);
  return retryAfter;
}

/** `n` requests one after another, for limits whose order matters (login failures before the right secret). */
async function inSequence(n: number, send: (i: number) => Promise<LightMyRequestResponse>) {
  const out: LightMyRequestResponse[] = [];
  for (let i = 0; i < n; i++) out.push(await send(i));
  return out;
}

/**
 * `n` requests at once, statuses sorted: all of them land in one fixed window however slow the machine is, and
 * the limiter counts them as they reach it.
 */
async function burst(n: number, send: (i: number) => Promise<LightMyRequestResponse>) {
  const responses = await Promise.all(Array.from({ length: n }, (_, i) => send(i)));
  return {
    responses,
    statuses: statusesOf(responses).sort((x, y) => x - y),
    refused: responses.find((r) => r.statusCode === 429),
  };
}

/** Waits until a fresh window has begun for a key that was just limited. */
const nextWindow = (retryAfterSeconds = 1) => sleep(retryAfterSeconds * 1000 + 150);

describe('per-identity request rate limit (COFFER_RATE_LIMIT_PER_SECOND=5)', () => {
  let rl: TestApp;
  beforeAll(async () => {
    rl = await createTestApp({ COFFER_RATE_LIMIT_PER_SECOND: '5' });
  });
  afterAll(() => rl?.close());

  it('the 6th request within a second is 429 rate_limited with Retry-After, unaudited; the next second is allowed', async () => {
    const tenant = await createTenant(setup.app, root);
    const svc = await createIdentity(setup.app, tenant.adminToken, { role: 'service' });
    const { statuses, refused } = await burst(6, () => whoami(rl, svc.token));
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429]);
    if (!refused) throw new Error('no request was refused');
    const retryAfter = expectRateLimited(refused, 1);
    // A flood must not write the audit log on the flooder's behalf.
    expect(await auditRowsFor(owner, String(refused.headers['x-request-id']))).toEqual([]);
    expect((await whoami(rl, svc.token)).statusCode).toBe(429);

    await nextWindow(retryAfter);
    expect((await whoami(rl, svc.token)).statusCode).toBe(200);
  });

  it('once refused, a token is refused before authentication until the window ends, with the same answer', async () => {
    const tenant = await createTenant(setup.app, root);
    const svc = await createIdentity(setup.app, tenant.adminToken, { role: 'service' });
    const { refused } = await burst(6, () => whoami(rl, svc.token));
    if (!refused) throw new Error('no request was refused');
    expectRateLimited(refused, 1);
    // Disabled now: a request that went the whole way would get 401. Within the window the token is refused
    // first, by the same limiter's answer: the flood costs no signature check and no identity lookup.
    const disable = await setup.app.inject({
      method: 'PATCH',
      url: `/v1/identities/${svc.identity.id}`,
      headers: bearer(tenant.adminToken),
      payload: { disabled: true },
    });
    expect(disable.statusCode, disable.body).toBe(200);
    const early = await whoami(rl, svc.token);
    const retryAfter = expectRateLimited(early, 1);
    for (const h of ['x-ratelimit-limit', 'x-ratelimit-remaining', 'content-type', 'cache-control']) {
      expect(early.headers[h], h).toBe(refused.headers[h]);
    }
    expect(early.headers['x-ratelimit-remaining']).toBe('0');
    expect(early.headers['content-security-policy']).toContain("default-src 'none'");
    expect(ErrorEnvelope.parse(early.json()).error.message).toBe(ErrorEnvelope.parse(refused.json()).error.message);
    expect(await auditRowsFor(owner, String(early.headers['x-request-id']))).toEqual([]);

    // The next window authenticates again, and the disabled identity is turned away for what it is.
    await nextWindow(retryAfter);
    const after = await whoami(rl, svc.token);
    expect(after.statusCode, after.body).toBe(401);
  });

  /**
   * Regression: @fastify/rate-limit gives each route its own store, so a per-route limit handed an identity its
   * budget once per route. Three whoami and three secret lists alternate: the 6th request is refused.
   */
  it('one budget per identity across routes: whoami and secret lists count together', async () => {
    const tenant = await createTenant(setup.app, root);
    const svc = await createIdentity(setup.app, tenant.adminToken, { role: 'service' });
    const { statuses } = await burst(6, (i) =>
      i % 2 === 0 ? whoami(rl, svc.token) : rl.app.inject({ url: '/v1/secrets', headers: bearer(svc.token) }),
    );
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429]);
  });

  it('counts per identity: a second identity of the same tenant keeps its own budget', async () => {
    const tenant = await createTenant(setup.app, root);
    const [one, two] = await Promise.all([
      createIdentity(setup.app, tenant.adminToken, { role: 'service' }),
      createIdentity(setup.app, tenant.adminToken, { role: 'service' }),
    ]);
    expect((await burst(7, () => whoami(rl, one.token))).statuses).toEqual([200, 200, 200, 200, 200, 429, 429]);
    expect((await burst(5, () => whoami(rl, two.token))).statuses).toEqual([200, 200, 200, 200, 200]);
  });

  it("a tenant's rateLimitPerSecond, set by the platform admin, overrides the server's, lower or higher", async () => {
    const tenant = await createTenant(setup.app, root);
    const svc = await createIdentity(setup.app, tenant.adminToken, { role: 'service' });
    const setLimit = async (rateLimitPerSecond: number | null) => {
      const res = await setup.app.inject({
        method: 'PATCH',
        url: `/v1/tenants/${tenant.tenant.id}`,
        headers: bearer(root),
        payload: { rateLimitPerSecond },
      });
      expect(res.statusCode, res.body).toBe(200);
      expect(Tenant.parse(res.json()).rateLimitPerSecond).toBe(rateLimitPerSecond);
    };

    await setLimit(2);
    const low = await burst(3, () => whoami(rl, svc.token));
    expect(low.statuses).toEqual([200, 200, 429]);
    if (!low.refused) throw new Error('no request was refused');
    await nextWindow(expectRateLimited(low.refused, 1));

    await setLimit(8);
    expect((await burst(9, () => whoami(rl, svc.token))).statuses).toEqual([
      200, 200, 200, 200, 200, 200, 200, 200, 429,
    ]);
    await nextWindow();

    // Back to the server's default.
    await setLimit(null);
    expect((await burst(6, () => whoami(rl, svc.token))).statuses).toEqual([200, 200, 200, 200, 200, 429]);
  });

  it('a tenant only a platform admin may re-limit: its own admin gets 403 and the limit stays', async () => {
    const tenant = await createTenant(setup.app, root);
    const res = await setup.app.inject({
      method: 'PATCH',
      url: `/v1/tenants/${tenant.tenant.id}`,
      headers: bearer(tenant.adminToken),
      payload: { rateLimitPerSecond: 1_000_000 },
    });
    expect(res.statusCode).toBe(403);
    const read = await setup.app.inject({ url: `/v1/tenants/${tenant.tenant.id}`, headers: bearer(root) });
    expect(Tenant.parse(read.json()).rateLimitPerSecond).toBeNull();
  });

  it("tenant B flooding past its limit does not make tenant A's reads 429", async () => {
    const [a, b] = await Promise.all([createTenant(setup.app, root), createTenant(setup.app, root)]);
    const readerA = await createIdentity(setup.app, a.adminToken, {
      role: 'service',
      policies: [{ path: 'sandbox/app/*', capabilities: ['read'] }],
    });
    const value = `a-value-${randomBytes(6).toString('hex')}`;
    const put = await setup.app.inject({
      method: 'PUT',
      url: '/v1/secrets/sandbox/app/KEY',
      headers: bearer(a.adminToken),
      payload: { value },
    });
    expect(put.statusCode).toBe(201);
    const flooderB = await createIdentity(setup.app, b.adminToken, { role: 'admin' });

    // B sends 40 requests at once while A reads its secret four times.
    const flood = Promise.all(
      Array.from({ length: 40 }, () => rl.app.inject({ url: '/v1/secrets', headers: bearer(flooderB.token) })),
    );
    const readsA = inSequence(4, () =>
      rl.app.inject({ url: '/v1/secrets/sandbox/app/KEY', headers: bearer(readerA.token) }),
    );
    const [floodStatuses, aResponses] = [statusesOf(await flood), await readsA];
    // Exactly 5 when the burst fits one window (it does unless the machine stalls for a second: then 10).
    expect(floodStatuses.filter((s) => s !== 200 && s !== 429)).toEqual([]);
    expect(floodStatuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(30);
    expect(statusesOf(aResponses)).toEqual([200, 200, 200, 200]);
    for (const r of aResponses) expect(SecretWithValue.parse(r.json()).value).toBe(value);
    // B's other identities are not held back by B's flooder either.
    expect((await whoami(rl, b.adminToken)).statusCode).toBe(200);
  });
});

describe('login throttling per client id (COFFER_LOGIN_MAX_FAILURES=3)', () => {
  let lt: TestApp;
  let tenant: TestTenant;
  beforeAll(async () => {
    lt = await createTestApp({ COFFER_LOGIN_MAX_FAILURES: '3' });
    tenant = await createTenant(setup.app, root);
  });
  afterAll(() => lt?.close());

  const loginAt = (clientId: string, clientSecret: string) =>
    lt.app.inject({ method: 'POST', url: '/v1/auth/token', payload: { clientId, clientSecret } });
  const newService = (): Promise<TestIdentity> => createIdentity(setup.app, tenant.adminToken, { role: 'service' });

  it('after 3 failures the client id is refused with 429, even with the right secret; each refusal is audited', async () => {
    const svc = await newService();
    const id = svc.identity.clientId;
    const failures = await inSequence(3, () => loginAt(id, 'wrong-secret'));
    expect(statusesOf(failures)).toEqual([401, 401, 401]);

    for (const secret of [svc.clientSecret, 'wrong-again']) {
      const res = await loginAt(id, secret);
      // A 15-minute window: Retry-After says how much of it is left.
      expectRateLimited(res, 900);
      expect(res.body).not.toContain('accessToken');
      const rows = await auditRowsFor(owner, String(res.headers['x-request-id']));
      expect(rows.map((r) => [r.action, r.outcome, r.error_code])).toEqual([['auth.token', 'denied', 'rate_limited']]);
      expect(rows[0]?.details).toMatchObject({ reason: 'too_many_failures' });
      // The client id is fingerprinted (it may be a secret typed into the wrong field), never stored as given.
      expect(JSON.stringify(rows[0])).not.toContain(id);
      expect(JSON.stringify(rows[0])).not.toContain(svc.clientSecret);
    }
  });

  it('other client ids are unaffected', async () => {
    const [blocked, other] = await Promise.all([newService(), newService()]);
    await inSequence(3, () => loginAt(blocked.identity.clientId, 'wrong'));
    expect((await loginAt(blocked.identity.clientId, blocked.clientSecret)).statusCode).toBe(429);
    const res = await loginAt(other.identity.clientId, other.clientSecret);
    expect(res.statusCode, res.body).toBe(200);
  });

  it('an unknown client id is throttled exactly like a known one (the refusal says nothing about existence)', async () => {
    const known = await newService();
    const unknown = `coffer_ci_${randomBytes(12).toString('hex')}`;
    await inSequence(3, () => loginAt(known.identity.clientId, 'wrong'));
    await inSequence(3, () => loginAt(unknown, 'wrong'));
    const a = await loginAt(known.identity.clientId, known.clientSecret);
    const b = await loginAt(unknown, 'wrong');
    expectRateLimited(a, 900);
    expectRateLimited(b, 900);
    const strip = (r: LightMyRequestResponse) => {
      const { requestId: _id, ...rest } = ErrorEnvelope.parse(r.json()).error;
      return rest;
    };
    expect(strip(a)).toEqual(strip(b));
    expect(Object.keys(a.headers).sort()).toEqual(Object.keys(b.headers).sort());
  });

  it('client-id lockout: 50 wrong secrets for root from one address do not lock out root at another; the attacker is throttled', async () => {
    const loginFrom = (remoteAddress: string, clientSecret: string) =>
      lt.app.inject({
        method: 'POST',
        url: '/v1/auth/token',
        remoteAddress,
        payload: { clientId: 'root', clientSecret },
      });
    const attacker = '198.51.100.66';
    const attempts = statusesOf(await inSequence(50, () => loginFrom(attacker, 'guessed-wrong')));
    expect(attempts.slice(0, 3)).toEqual([401, 401, 401]);
    expect(new Set(attempts.slice(3))).toEqual(new Set([429]));
    // The real platform admin, from an address that never failed, logs in with the right secret.
    const real = await loginFrom('203.0.113.9', inject('rootSecret'));
    expect(real.statusCode, real.body).toBe(200);
    // The attacker's address stays refused, even once it holds the right secret.
    expectRateLimited(await loginFrom(attacker, inject('rootSecret')), 900);
  });

  it('a successful login clears the failures counted so far', async () => {
    const svc = await newService();
    const id = svc.identity.clientId;
    expect(statusesOf(await inSequence(2, () => loginAt(id, 'wrong')))).toEqual([401, 401]);
    expect((await loginAt(id, svc.clientSecret)).statusCode).toBe(200);
    expect(statusesOf(await inSequence(2, () => loginAt(id, 'wrong')))).toEqual([401, 401]);
    expect((await loginAt(id, svc.clientSecret)).statusCode).toBe(200);
  });
});

describe('logins per source address (COFFER_LOGIN_RATE_LIMIT_PER_MINUTE=3)', () => {
  let la: TestApp;
  let behindProxy: TestApp;
  let svc: TestIdentity;
  beforeAll(async () => {
    la = await createTestApp({ COFFER_LOGIN_RATE_LIMIT_PER_MINUTE: '3' });
    behindProxy = await createTestApp({
      COFFER_LOGIN_RATE_LIMIT_PER_MINUTE: '3',
      COFFER_TLS_TERMINATED_UPSTREAM: 'true',
    });
    const tenant = await createTenant(setup.app, root);
    svc = await createIdentity(setup.app, tenant.adminToken, { role: 'service' });
  });
  afterAll(async () => {
    await Promise.all([la?.close(), behindProxy?.close()]);
  });

  const loginFrom = (app: TestApp, remoteAddress: string, secret: string, headers: Record<string, string> = {}) =>
    app.app.inject({
      method: 'POST',
      url: '/v1/auth/token',
      remoteAddress,
      headers,
      payload: { clientId: svc.identity.clientId, clientSecret: secret },
    });

  it('the 4th login from one address within a minute is 429, right secret or not; another address logs in', async () => {
    const statuses = statusesOf(
      await inSequence(3, (i) => loginFrom(la, '203.0.113.7', i === 1 ? 'wrong' : svc.clientSecret)),
    );
    expect(statuses).toEqual([200, 401, 200]);
    expectRateLimited(await loginFrom(la, '203.0.113.7', svc.clientSecret), 60);
    expect((await loginFrom(la, '203.0.113.8', svc.clientSecret)).statusCode).toBe(200);
  });

  it('X-Forwarded-For does not move a caller to a fresh budget unless a TLS proxy is declared', async () => {
    await inSequence(3, () => loginFrom(la, '203.0.113.20', 'wrong'));
    const spoofed = await loginFrom(la, '203.0.113.20', svc.clientSecret, { 'x-forwarded-for': '198.51.100.1' });
    expectRateLimited(spoofed, 60);

    // Behind a declared proxy the forwarded address is the caller, so each client gets its own budget.
    await inSequence(3, () => loginFrom(behindProxy, '10.0.0.2', 'wrong', { 'x-forwarded-for': '198.51.100.2' }));
    expectRateLimited(
      await loginFrom(behindProxy, '10.0.0.2', svc.clientSecret, { 'x-forwarded-for': '198.51.100.2' }),
      60,
    );
    const other = await loginFrom(behindProxy, '10.0.0.2', svc.clientSecret, { 'x-forwarded-for': '198.51.100.3' });
    expect(other.statusCode, other.body).toBe(200);
  });

  /**
   * Regression: trusting every hop made the caller's address the left-most X-Forwarded-For entry, which the client
   * writes itself; a proxy that appends the real address must win, for the login budget and the audit log alike.
   */
  it('behind a proxy that appends the real address, a made-up X-Forwarded-For does not buy a fresh budget', async () => {
    const real = '198.51.100.77';
    const attempts = await inSequence(4, (i) =>
      loginFrom(behindProxy, '10.0.0.2', 'wrong', { 'x-forwarded-for': `203.0.113.${100 + i}, ${real}` }),
    );
    const rows = await auditRowsFor(owner, String(attempts[0]?.headers['x-request-id']));
    expect(rows.map((r) => r.source_ip)).toEqual([real]);
    expect(statusesOf(attempts)).toEqual([401, 401, 401, 429]);
  });
});

describe('unauthenticated requests per source address (COFFER_AUTH_FAILURES_PER_MINUTE=50)', () => {
  it('audit flood: 200 garbage-token requests from one address are refused past the budget and write a handful of events that count them all', async () => {
    const flood = await createTestApp({ COFFER_AUTH_FAILURES_PER_MINUTE: '50' });
    const source = '198.51.100.23';
    const garbage = `Bearer ${Buffer.from('{"alg":"EdDSA","kid":"x"}').toString('base64url')}.e30.${'A'.repeat(86)}`;
    const rowsFrom = async () =>
      (
        await owner.query<{ error_code: string; request_id: string | null; details: Record<string, unknown> | null }>(
          'select error_code, request_id, details from coffer.audit_events where source_ip = $1 order by seq',
          [source],
        )
      ).rows;
    let statuses: number[];
    try {
      statuses = statusesOf(
        await inSequence(200, () =>
          flood.app.inject({ url: '/v1/auth/whoami', remoteAddress: source, headers: { authorization: garbage } }),
        ),
      );
      // Past the budget the source is refused before its token is looked at, with Retry-After.
      expect(statuses.slice(0, 50)).toEqual(Array(50).fill(401));
      expect(statuses.slice(50)).toEqual(Array(150).fill(429));
      expectRateLimited(
        await flood.app.inject({ url: '/v1/auth/whoami', remoteAddress: source, headers: { authorization: garbage } }),
        60,
      );
      // While the window lasts, only the first refusal of each kind was written.
      expect((await rowsFrom()).map((r) => r.error_code)).toEqual(['unauthorized', 'rate_limited']);
      // Another address is not held back by this one.
      expect(
        (await flood.app.inject({ url: '/v1/auth/whoami', remoteAddress: '203.0.113.44', headers: bearer(root) }))
          .statusCode,
      ).toBe(200);
    } finally {
      await flood.close();
    }
    // The rest are flushed (at the window's end, or on close) as one event per kind, carrying how many it stands for.
    const rows = await rowsFrom();
    expect(rows).toHaveLength(4);
    const counted = rows.map((r) => (typeof r.details?.count === 'number' ? r.details.count : 1));
    expect(counted.reduce((a, b) => a + b, 0)).toBe(201);
    expect(rows.slice(2).map((r) => [r.error_code, r.details?.count])).toEqual([
      ['unauthorized', 49],
      ['rate_limited', 150],
    ]);
  });
});
