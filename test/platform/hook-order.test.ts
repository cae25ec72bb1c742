import { ErrorEnvelope } from '@coffer/contracts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, createIdentity, createTenant } from '../support/factories.ts';
import { ownerSuite } from '../support/suite.ts';
import { createTestApp, type TestApp } from '../support/test-app.ts';

/**
 * The request hooks run in an order that carries security (app.ts): tracing, security headers, the over-limit
 * fast path, authentication, the identity's rate limit. Each test here breaks if two of them swap.
 */

let t: TestApp;
ownerSuite((s) => ({ t } = s));

let rl: TestApp;
beforeAll(async () => {
  rl = await createTestApp({ COFFER_RATE_LIMIT_PER_SECOND: '3' });
});
afterAll(() => rl?.close());

const whoami = (authorization: string) => rl.app.inject({ url: '/v1/auth/whoami', headers: { authorization } });

/** A token with the same signature as `token` but a payload nobody signed. */
const forgedWith = (token: string) => `Bearer eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJub2JvZHkifQ.${token.split('.')[2]}`;

describe('hook order', () => {
  it('the over-limit fast path runs before authentication: a forged token borrowing the signature gets 429', async () => {
    const tenant = await createTenant(t.app);
    const svc = await createIdentity(t.app, tenant.adminToken, { role: 'service' });
    const statuses = (await Promise.all(Array.from({ length: 4 }, () => whoami(bearer(svc.token).authorization)))).map(
      (r) => r.statusCode,
    );
    expect(statuses.sort()).toEqual([200, 200, 200, 429]);
    const forged = await whoami(forgedWith(svc.token));
    expect(forged.statusCode, forged.body).toBe(429);
    expect(ErrorEnvelope.parse(forged.json()).error.code).toBe('rate_limited');
    // Security and response headers come before it, so even this refusal carries them.
    expect(forged.headers['content-security-policy']).toContain("default-src 'none'");
    expect(forged.headers['cache-control']).toBe('no-store');
    expect(forged.headers['x-request-id']).toBe(ErrorEnvelope.parse(forged.json()).error.requestId);
  });

  it("authentication runs before the identity's rate limit: a flood of bad tokens is 401, never counted", async () => {
    const tenant = await createTenant(t.app);
    const svc = await createIdentity(t.app, tenant.adminToken, { role: 'service' });
    const forged = forgedWith(svc.token);
    const responses = await Promise.all(Array.from({ length: 8 }, () => whoami(forged)));
    expect(responses.map((r) => r.statusCode)).toEqual(Array(8).fill(401));
  });
});
