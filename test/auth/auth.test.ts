import { generateKeyPairSync, randomUUID } from 'node:crypto';
import type { ErrorEnvelope, JwkSet, TokenResponse, WhoAmI } from '@coffer/contracts';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  bearer,
  createIdentity,
  createTenant,
  login,
  type TestIdentity,
  type TestTenant,
} from '../support/factories.ts';
import {
  craftJwt,
  decodeJwt,
  ed25519Signer,
  encodePart,
  hs256Signer,
  type JwtPart,
  nowSeconds,
  publicPemOf,
  unsigned,
} from '../support/jwt.ts';
import { createTestApp, type TestApp } from '../support/test-app.ts';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

const ISSUER = 'coffer';
const AUDIENCE = 'coffer-api';

async function tokenRequest(clientId: string, clientSecret: string): Promise<LightMyRequestResponse> {
  return t.app.inject({ method: 'POST', url: '/v1/auth/token', payload: { clientId, clientSecret } });
}

async function whoami(authorization: string | undefined): Promise<LightMyRequestResponse> {
  return t.app.inject({ url: '/v1/auth/whoami', headers: authorization === undefined ? {} : { authorization } });
}

async function serverKid(): Promise<string> {
  const res = await t.app.inject({ url: '/.well-known/jwks.json' });
  const kid = (res.json() as JwkSet).keys[0]?.kid;
  if (!kid) throw new Error('the JWKS has no key');
  return kid;
}

function expectUnauthorized(res: LightMyRequestResponse): void {
  expect(res.statusCode).toBe(401);
  const body = res.json() as ErrorEnvelope;
  expect(body.error.code).toBe('unauthorized');
  expect(body.error.requestId).toBe(res.headers['x-request-id']);
}

describe('token login', () => {
  it('returns a Bearer token signed with EdDSA under a kid published in the JWKS', async () => {
    const tenant = await createTenant(t.app);
    const res = await tokenRequest(tenant.admin.clientId, tenant.admin.clientSecret);
    expect(res.statusCode).toBe(200);
    const body = res.json() as TokenResponse;
    expect(Object.keys(body).sort()).toEqual(['accessToken', 'expiresIn', 'tokenType']);
    expect(body.tokenType).toBe('Bearer');
    expect(body.expiresIn).toBe(900);

    const { header, payload } = decodeJwt(body.accessToken);
    expect(header.alg).toBe('EdDSA');
    expect(typeof header.kid).toBe('string');
    const jwks = (await t.app.inject({ url: '/.well-known/jwks.json' })).json() as JwkSet;
    const jwk = jwks.keys.find((k) => k.kid === header.kid);
    expect(jwk).toMatchObject({ kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', use: 'sig' });
    // The JWKS carries only public material.
    expect(JSON.stringify(jwks)).not.toMatch(/"d"/);

    expect(payload).toMatchObject({
      iss: ISSUER,
      aud: AUDIENCE,
      sub: (await whoamiOf(body.accessToken)).identityId,
      tid: tenant.tenant.id,
      role: 'admin',
    });
    expect(typeof payload.jti).toBe('string');
    expect(payload.exp).toBe((payload.iat as number) + 900);
    expect(Math.abs((payload.iat as number) - nowSeconds())).toBeLessThan(30);
  });

  it('issues a fresh jti on every login', async () => {
    const tenant = await createTenant(t.app);
    const second = await login(t.app, tenant.admin.clientId, tenant.admin.clientSecret);
    expect(decodeJwt(second).payload.jti).not.toBe(decodeJwt(tenant.adminToken).payload.jti);
  });

  it('honours a per-identity tokenTtlSeconds', async () => {
    const tenant = await createTenant(t.app);
    const svc = await createIdentity(t.app, tenant.adminToken, { role: 'service', tokenTtlSeconds: 120 });
    const res = await tokenRequest(svc.identity.clientId, svc.clientSecret);
    expect((res.json() as TokenResponse).expiresIn).toBe(120);
    const { payload } = decodeJwt(svc.token);
    expect(payload.exp).toBe((payload.iat as number) + 120);
    const me = await whoamiOf(svc.token);
    expect(Date.parse(me.tokenExpiresAt)).toBe((payload.exp as number) * 1000);
  });

  it('answers a wrong secret and an unknown client id with the same 401', async () => {
    const tenant = await createTenant(t.app);
    const wrong = await tokenRequest(tenant.admin.clientId, `${tenant.admin.clientSecret}x`);
    const unknown = await tokenRequest('coffer_ci_doesnotexist0000', tenant.admin.clientSecret);
    expectUnauthorized(wrong);
    expectUnauthorized(unknown);
    const strip = (r: LightMyRequestResponse) => {
      const { requestId: _ignored, ...rest } = (r.json() as ErrorEnvelope).error;
      return rest;
    };
    expect(strip(wrong)).toEqual(strip(unknown));
    expect(Object.keys(wrong.headers).sort()).toEqual(Object.keys(unknown.headers).sort());
  });

  it('refuses a disabled identity at login and its existing token on the next request', async () => {
    const tenant = await createTenant(t.app);
    const svc = await createIdentity(t.app, tenant.adminToken, { role: 'service' });
    expect((await whoami(`Bearer ${svc.token}`)).statusCode).toBe(200);

    await patchIdentity(tenant, svc, { disabled: true });

    const loginRes = await tokenRequest(svc.identity.clientId, svc.clientSecret);
    expectUnauthorized(loginRes);
    const wrong = await tokenRequest(svc.identity.clientId, 'wrong-secret');
    expect((loginRes.json() as ErrorEnvelope).error.message).toBe((wrong.json() as ErrorEnvelope).error.message);
    expectUnauthorized(await whoami(`Bearer ${svc.token}`));
  });

  // Regression test: this was a bug the first version of this suite found.
  it('a token issued before a disable stays dead after the identity is enabled again', async () => {
    const tenant = await createTenant(t.app);
    const svc = await createIdentity(t.app, tenant.adminToken, { role: 'service' });
    await patchIdentity(tenant, svc, { disabled: true });
    expectUnauthorized(await whoami(`Bearer ${svc.token}`));
    await patchIdentity(tenant, svc, { disabled: false });
    // Logging in again works, as it should…
    expect((await tokenRequest(svc.identity.clientId, svc.clientSecret)).statusCode).toBe(200);
    // …but the token from before the disable must not.
    expectUnauthorized(await whoami(`Bearer ${svc.token}`));
  });

  it("refuses a deleted identity's token", async () => {
    const tenant = await createTenant(t.app);
    const svc = await createIdentity(t.app, tenant.adminToken, { role: 'service' });
    expect((await whoami(`Bearer ${svc.token}`)).statusCode).toBe(200);
    const del = await t.app.inject({
      method: 'DELETE',
      url: `/v1/identities/${svc.identity.id}`,
      headers: bearer(tenant.adminToken),
    });
    expect(del.statusCode).toBe(204);
    expectUnauthorized(await whoami(`Bearer ${svc.token}`));
    expectUnauthorized(await tokenRequest(svc.identity.clientId, svc.clientSecret));
  });

  it('after a client secret rotation: the old secret and old token fail, the new secret works', async () => {
    const tenant = await createTenant(t.app);
    const svc = await createIdentity(t.app, tenant.adminToken, { role: 'service' });
    expect((await whoami(`Bearer ${svc.token}`)).statusCode).toBe(200);

    const rot = await t.app.inject({
      method: 'POST',
      url: `/v1/identities/${svc.identity.id}/secret`,
      headers: bearer(tenant.adminToken),
    });
    expect(rot.statusCode).toBe(200);
    const creds = rot.json() as { clientId: string; clientSecret: string };
    expect(creds.clientId).toBe(svc.identity.clientId);
    expect(creds.clientSecret).not.toBe(svc.clientSecret);

    expectUnauthorized(await tokenRequest(svc.identity.clientId, svc.clientSecret));
    expectUnauthorized(await whoami(`Bearer ${svc.token}`));
    const fresh = await login(t.app, creds.clientId, creds.clientSecret);
    const me = await whoami(`Bearer ${fresh}`);
    expect(me.statusCode).toBe(200);
    expect((me.json() as WhoAmI).identityId).toBe(svc.identity.id);
  });

  it('whoami reports the identity, tenant, role and policies of the token', async () => {
    const tenant = await createTenant(t.app);
    const policies = [{ path: 'sandbox/sbx-1/*', capabilities: ['read' as const, 'list' as const] }];
    const svc = await createIdentity(t.app, tenant.adminToken, { role: 'service', name: 'reader', policies });
    expect(await whoamiOf(svc.token)).toMatchObject({
      identityId: svc.identity.id,
      clientId: svc.identity.clientId,
      name: 'reader',
      tenantId: tenant.tenant.id,
      role: 'service',
      policies,
    });
  });
});

async function whoamiOf(token: string): Promise<WhoAmI> {
  const res = await whoami(`Bearer ${token}`);
  if (res.statusCode !== 200) throw new Error(`whoami failed: ${res.statusCode} ${res.body}`);
  return res.json() as WhoAmI;
}

async function patchIdentity(tenant: TestTenant, who: TestIdentity, body: Record<string, unknown>): Promise<void> {
  const res = await t.app.inject({
    method: 'PATCH',
    url: `/v1/identities/${who.identity.id}`,
    headers: bearer(tenant.adminToken),
    payload: body,
  });
  expect(res.statusCode).toBe(200);
}

describe('token attacks: each answers 401 unauthorized on GET /v1/auth/whoami', () => {
  // One tenant with a service identity, made for these tests and never changed by them.
  let tenant: TestTenant;
  let svc: TestIdentity;
  let kid: string;
  const serverKey = () => inject('jwtPrivateKeyPem');

  beforeAll(async () => {
    tenant = await createTenant(t.app);
    svc = await createIdentity(t.app, tenant.adminToken, { role: 'service' });
    kid = await serverKid();
  });

  /** The claims of a real token of `svc`, refreshed: what an attacker mutates one thing of. */
  function claims(overrides: JwtPart = {}): JwtPart {
    const now = nowSeconds();
    return { ...decodeJwt(svc.token).payload, jti: randomUUID(), iat: now, exp: now + 300, ...overrides };
  }
  const header = (overrides: JwtPart = {}): JwtPart => ({ alg: 'EdDSA', typ: 'JWT', kid, ...overrides });

  it('control: a token crafted with the server key and real claims is accepted', async () => {
    const token = craftJwt(header(), claims(), ed25519Signer(serverKey()));
    const res = await whoami(`Bearer ${token}`);
    expect(res.statusCode).toBe(200);
    expect((res.json() as WhoAmI).identityId).toBe(svc.identity.id);
  });

  it('forged token signed with another Ed25519 key under the server kid', async () => {
    const attacker = generateKeyPairSync('ed25519').privateKey;
    expectUnauthorized(await whoami(`Bearer ${craftJwt(header(), claims(), ed25519Signer(attacker))}`));
  });

  it('alg none (unsigned)', async () => {
    expectUnauthorized(await whoami(`Bearer ${craftJwt(header({ alg: 'none' }), claims(), unsigned)}`));
    expectUnauthorized(await whoami(`Bearer ${craftJwt({ alg: 'none', typ: 'JWT' }, claims(), unsigned)}`));
  });

  it('HS256 signed with the server public key PEM as the HMAC secret (algorithm confusion)', async () => {
    const pem = publicPemOf(serverKey());
    const jwks = (await t.app.inject({ url: '/.well-known/jwks.json' })).json() as JwkSet;
    expect(jwks.keys.some((k) => k.kid === kid)).toBe(true);
    expectUnauthorized(await whoami(`Bearer ${craftJwt(header({ alg: 'HS256' }), claims(), hs256Signer(pem))}`));
    expectUnauthorized(await whoami(`Bearer ${craftJwt(header({ alg: 'HS256' }), claims(), hs256Signer(pem.trim()))}`));
  });

  it('expired token', async () => {
    const now = nowSeconds();
    const token = craftJwt(header(), claims({ iat: now - 1000, exp: now - 60 }), ed25519Signer(serverKey()));
    const res = await whoami(`Bearer ${token}`);
    expectUnauthorized(res);
    expect((res.json() as ErrorEnvelope).error.message).toContain('expired');
  });

  it('token without exp', async () => {
    const { exp: _dropped, ...noExp } = claims();
    expectUnauthorized(await whoami(`Bearer ${craftJwt(header(), noExp, ed25519Signer(serverKey()))}`));
  });

  it('wrong aud', async () => {
    const token = craftJwt(header(), claims({ aud: 'some-other-api' }), ed25519Signer(serverKey()));
    expectUnauthorized(await whoami(`Bearer ${token}`));
  });

  it('wrong iss', async () => {
    const token = craftJwt(header(), claims({ iss: 'https://evil.example' }), ed25519Signer(serverKey()));
    expectUnauthorized(await whoami(`Bearer ${token}`));
  });

  it('unknown kid', async () => {
    const token = craftJwt(header({ kid: 'not-a-kid-we-issued' }), claims(), ed25519Signer(serverKey()));
    expectUnauthorized(await whoami(`Bearer ${token}`));
    expectUnauthorized(await whoami(`Bearer ${craftJwt({ alg: 'EdDSA' }, claims(), ed25519Signer(serverKey()))}`));
  });

  it('jwk header injected (attacker key embedded, and even a server-signed token naming its own key)', async () => {
    const attacker = generateKeyPairSync('ed25519');
    const jwk = attacker.publicKey.export({ format: 'jwk' });
    expectUnauthorized(
      await whoami(`Bearer ${craftJwt(header({ jwk }), claims(), ed25519Signer(attacker.privateKey))}`),
    );
    const serverJwk = publicPemOf(serverKey());
    expectUnauthorized(
      await whoami(`Bearer ${craftJwt(header({ jwk: serverJwk }), claims(), ed25519Signer(serverKey()))}`),
    );
    expectUnauthorized(
      await whoami(
        `Bearer ${craftJwt(header({ jku: 'https://evil.example/jwks.json' }), claims(), ed25519Signer(serverKey()))}`,
      ),
    );
  });

  it('stripped signature', async () => {
    const [h, p] = svc.token.split('.');
    expectUnauthorized(await whoami(`Bearer ${h}.${p}.`));
  });

  it('altered payload (role changed to admin, original signature kept)', async () => {
    const [h, , s] = svc.token.split('.');
    const forged = `${h}.${encodePart({ ...decodeJwt(svc.token).payload, role: 'admin' })}.${s}`;
    expectUnauthorized(await whoami(`Bearer ${forged}`));
    const list = await t.app.inject({ url: '/v1/identities', headers: { authorization: `Bearer ${forged}` } });
    expect(list.statusCode).toBe(401);
  });

  it('validly signed token claiming a role the identity does not have', async () => {
    const token = craftJwt(header(), claims({ role: 'admin' }), ed25519Signer(serverKey()));
    expectUnauthorized(await whoami(`Bearer ${token}`));
  });

  it('validly signed token naming another tenant than the identity belongs to', async () => {
    const other = await createTenant(t.app);
    const token = craftJwt(header(), claims({ tid: other.tenant.id }), ed25519Signer(serverKey()));
    expectUnauthorized(await whoami(`Bearer ${token}`));
  });

  it('garbage token', async () => {
    expectUnauthorized(await whoami('Bearer garbage'));
    expectUnauthorized(await whoami('Bearer a.b.c'));
    expectUnauthorized(await whoami(`Bearer ${'A'.repeat(40)}.${'B'.repeat(40)}.${'C'.repeat(40)}`));
  });

  it('missing Bearer prefix', async () => {
    expectUnauthorized(await whoami(svc.token));
    expectUnauthorized(await whoami(`Basic ${svc.token}`));
    expectUnauthorized(await whoami(`bearer${svc.token}`));
  });

  it('no authorization header', async () => {
    expectUnauthorized(await whoami(undefined));
  });
});
