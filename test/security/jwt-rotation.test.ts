import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type ErrorEnvelope, JwkSet, WhoAmI } from '@coffer/contracts';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createIdentity, createTenant, login, rootToken, type TestIdentity } from '../support/factories.ts';
import { craftJwt, decodeJwt, ed25519Signer, encodePart, type JwtPart, nowSeconds } from '../support/jwt.ts';
import { createTestApp, type TestApp } from '../support/test-app.ts';

/**
 * Signing-key rotation, and the token attacks that test/auth/auth.test.ts does not already cover: a future
 * `nbf`, key-naming headers other than `jwk` (`jku`, `x5u`, `x5c`, `crit`), and tokens that point at the right key
 * but name an identity of another tenant.
 */

function ed25519Pair(): { privatePem: string; publicPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privatePem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    publicPem: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
  };
}

const whoami = (app: TestApp, token: string): Promise<LightMyRequestResponse> =>
  app.app.inject({ url: '/v1/auth/whoami', headers: { authorization: `Bearer ${token}` } });

async function kidsOf(app: TestApp): Promise<string[]> {
  const res = await app.app.inject({ url: '/.well-known/jwks.json' });
  expect(res.statusCode).toBe(200);
  return JwkSet.parse(res.json()).keys.map((k) => k.kid);
}

function expectUnauthorized(res: LightMyRequestResponse): void {
  expect(res.statusCode, res.body).toBe(401);
  expect((res.json() as ErrorEnvelope).error.code).toBe('unauthorized');
}

function expectIdentity(res: LightMyRequestResponse, identityId: string): void {
  expect(res.statusCode, res.body).toBe(200);
  expect(WhoAmI.parse(res.json()).identityId).toBe(identityId);
}

const tmp = mkdtempSync(path.join(os.tmpdir(), 'coffer-jwt-rotation-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('signing-key rotation', () => {
  const oldKey = ed25519Pair();
  const newKey = ed25519Pair();
  let before: TestApp; // signs with the old key
  let after: TestApp; // signs with the new key, still verifies the old one
  let afterWithoutPrevious: TestApp; // signs with the new key, knows nothing of the old one
  let svc: TestIdentity; // logged in on `before`: its token is signed with the old key
  let oldKid: string;

  beforeAll(async () => {
    const previousFile = path.join(tmp, 'previous.pem');
    writeFileSync(previousFile, oldKey.publicPem, { mode: 0o600 });
    before = await createTestApp({ COFFER_JWT_PRIVATE_KEY: oldKey.privatePem });
    after = await createTestApp({
      COFFER_JWT_PRIVATE_KEY: newKey.privatePem,
      COFFER_JWT_PREVIOUS_PUBLIC_KEYS_FILE: previousFile,
    });
    afterWithoutPrevious = await createTestApp({ COFFER_JWT_PRIVATE_KEY: newKey.privatePem });
    const tenant = await createTenant(before.app, await rootToken(before.app));
    svc = await createIdentity(before.app, tenant.adminToken, { role: 'service' });
    oldKid = decodeJwt(svc.token).header.kid as string;
  });
  afterAll(async () => {
    await Promise.all([before?.close(), after?.close(), afterWithoutPrevious?.close()]);
  });

  it('a token signed by the previous key keeps working after the rotation', async () => {
    expectIdentity(await whoami(before, svc.token), svc.identity.id);
    expectIdentity(await whoami(after, svc.token), svc.identity.id);
  });

  it('the JWKS publishes both keys after the rotation, only the old one before it', async () => {
    const [beforeKids, afterKids, bareKids] = await Promise.all([
      kidsOf(before),
      kidsOf(after),
      kidsOf(afterWithoutPrevious),
    ]);
    expect(beforeKids).toEqual([oldKid]);
    expect(afterKids).toHaveLength(2);
    expect(afterKids).toContain(oldKid);
    // The active key comes first.
    expect(afterKids[0]).toBe(bareKids[0]);
    expect(bareKids).toEqual([afterKids[0]]);
  });

  it('new tokens carry the new kid, and the server that has not rotated yet refuses them', async () => {
    const fresh = await login(after.app, svc.identity.clientId, svc.clientSecret);
    const { kid } = decodeJwt(fresh).header;
    expect(kid).not.toBe(oldKid);
    expect((await kidsOf(after))[0]).toBe(kid);
    expectIdentity(await whoami(after, fresh), svc.identity.id);
    expectUnauthorized(await whoami(before, fresh));
  });

  it('without the previous key listed, a token signed by it is refused (401)', async () => {
    expectUnauthorized(await whoami(afterWithoutPrevious, svc.token));
  });

  it('a token of the previous key stops working once it expires', async () => {
    const now = nowSeconds();
    const claims = { ...decodeJwt(svc.token).payload, jti: randomUUID() };
    const header = { alg: 'EdDSA', typ: 'JWT', kid: oldKid };
    const live = craftJwt(header, { ...claims, iat: now, exp: now + 300 }, ed25519Signer(oldKey.privatePem));
    const expired = craftJwt(header, { ...claims, iat: now - 900, exp: now - 60 }, ed25519Signer(oldKey.privatePem));
    expectIdentity(await whoami(after, live), svc.identity.id);
    const res = await whoami(after, expired);
    expectUnauthorized(res);
    expect((res.json() as ErrorEnvelope).error.message).toContain('expired');
  });

  it('the previous key only verifies: a token under the old kid signed by the new key, or vice versa, is refused', async () => {
    const now = nowSeconds();
    const claims = { ...decodeJwt(svc.token).payload, jti: randomUUID(), iat: now, exp: now + 300 };
    const newKid = (await kidsOf(after))[0] as string;
    expectUnauthorized(
      await whoami(after, craftJwt({ alg: 'EdDSA', kid: oldKid }, claims, ed25519Signer(newKey.privatePem))),
    );
    expectUnauthorized(
      await whoami(after, craftJwt({ alg: 'EdDSA', kid: newKid }, claims, ed25519Signer(oldKey.privatePem))),
    );
  });
});

describe('token attacks not covered in test/auth/auth.test.ts (each 401 on GET /v1/auth/whoami)', () => {
  let t: TestApp;
  let svc: TestIdentity;
  let foreign: TestIdentity; // a service of another tenant
  let kid: string;
  const serverKey = () => inject('jwtPrivateKeyPem');

  beforeAll(async () => {
    t = await createTestApp();
    const root = await rootToken(t.app);
    const [a, b] = await Promise.all([createTenant(t.app, root), createTenant(t.app, root)]);
    [svc, foreign] = await Promise.all([
      createIdentity(t.app, a.adminToken, { role: 'service' }),
      createIdentity(t.app, b.adminToken, { role: 'service' }),
    ]);
    kid = decodeJwt(svc.token).header.kid as string;
  });
  afterAll(() => t?.close());

  const claims = (overrides: JwtPart = {}): JwtPart => {
    const now = nowSeconds();
    return { ...decodeJwt(svc.token).payload, jti: randomUUID(), iat: now, exp: now + 300, ...overrides };
  };
  const header = (overrides: JwtPart = {}): JwtPart => ({ alg: 'EdDSA', typ: 'JWT', kid, ...overrides });
  const signed = (h: JwtPart, c: JwtPart) => craftJwt(h, c, ed25519Signer(serverKey()));

  it('control: the same crafting with nothing wrong is accepted, also with a past nbf', async () => {
    expectIdentity(await whoami(t, signed(header(), claims())), svc.identity.id);
    expectIdentity(await whoami(t, signed(header(), claims({ nbf: nowSeconds() - 60 }))), svc.identity.id);
  });

  it('not-yet-valid token (nbf in the future)', async () => {
    expectUnauthorized(await whoami(t, signed(header(), claims({ nbf: nowSeconds() + 300 }))));
  });

  it('jku header injected (a URL to fetch the verifying key from)', async () => {
    expectUnauthorized(await whoami(t, signed(header({ jku: 'https://attacker.example/jwks.json' }), claims())));
  });

  it('x5u header injected (a URL to fetch an X.509 certificate from)', async () => {
    expectUnauthorized(await whoami(t, signed(header({ x5u: 'https://attacker.example/cert.pem' }), claims())));
  });

  it('x5c header injected (an embedded certificate chain)', async () => {
    const attacker = generateKeyPairSync('ed25519');
    const der = attacker.publicKey.export({ format: 'der', type: 'spki' }).toString('base64');
    expectUnauthorized(await whoami(t, craftJwt(header({ x5c: [der] }), claims(), ed25519Signer(attacker.privateKey))));
    // Even a token the server itself signed is refused when it names a certificate.
    expectUnauthorized(await whoami(t, signed(header({ x5c: [der] }), claims())));
  });

  it('crit header naming an extension the server does not understand', async () => {
    expectUnauthorized(await whoami(t, signed(header({ crit: ['exp'], 'urn:x:policy': 'bypass' }), claims())));
  });

  it("right kid and key, payload naming another tenant's identity under this tenant", async () => {
    // sub of B's service, tid of A: the identity is looked up within the claimed tenant and is not there.
    const token = signed(header(), claims({ sub: foreign.identity.id }));
    expectUnauthorized(await whoami(t, token));
  });

  it("payload swapped for another tenant's identity (sub and tid of B), original signature kept", async () => {
    const [h, , s] = svc.token.split('.');
    const theirs = decodeJwt(foreign.token).payload;
    const swapped = `${h}.${encodePart({ ...decodeJwt(svc.token).payload, sub: theirs.sub, tid: theirs.tid })}.${s}`;
    expectUnauthorized(await whoami(t, swapped));
    // And the same token re-signed by an attacker's key under the server kid.
    const attacker = generateKeyPairSync('ed25519').privateKey;
    expectUnauthorized(
      await whoami(t, craftJwt(header(), claims({ sub: theirs.sub, tid: theirs.tid }), ed25519Signer(attacker))),
    );
  });
});
