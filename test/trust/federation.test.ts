import { randomBytes } from 'node:crypto';
import type { CreateIdentityResponse, TokenResponse, TrustedIssuer } from '@coffer/contracts';
import { decodeJwt, SignJWT } from 'jose';
import type pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { bearer, createTenant, type TestTenant } from '../support/factories.ts';
import { githubClaims, jwksServer, kubernetesClaims, mint, openIdProvider, signingKey } from '../support/issuers.ts';
import { ownerSuite } from '../support/suite.ts';
import type { TestApp } from '../support/test-app.ts';

let t: TestApp;
let owner: pg.Client;
ownerSuite((s) => {
  ({ t, owner } = s);
});
const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanups) await c();
});

const GITHUB = 'https://token.actions.githubusercontent.com';
const audienceOf = (tenant: TestTenant) => `coffer:${tenant.tenant.slug}`;

async function api(token: string, method: 'GET' | 'POST' | 'PATCH' | 'DELETE' | 'PUT', url: string, payload?: unknown) {
  return t.app.inject({
    method,
    url,
    headers: bearer(token),
    ...(payload !== undefined ? { payload: payload as object } : {}),
  });
}

async function trust(tenant: TestTenant, body: Record<string, unknown>): Promise<TrustedIssuer> {
  const res = await api(tenant.adminToken, 'POST', '/v1/trust/issuers', body);
  expect(res.statusCode, res.body).toBe(201);
  return res.json() as TrustedIssuer;
}

async function federatedIdentity(tenant: TestTenant, body: Record<string, unknown>) {
  const res = await api(tenant.adminToken, 'POST', '/v1/identities', {
    name: `fed-${randomBytes(3).toString('hex')}`,
    role: 'service',
    ...body,
  });
  expect(res.statusCode, res.body).toBe(201);
  return (res.json() as CreateIdentityResponse).identity;
}

function exchange(identity: string, subjectToken: string) {
  return t.app.inject({ method: 'POST', url: '/v1/auth/token', payload: { identity, subjectToken } });
}

/** The reason the audit log gives for the last federated login of an identity. */
async function lastLogin(identityId: string) {
  const { rows } = await owner.query(
    `select outcome, details from coffer.audit_events where actor_id = $1 and action = 'auth.token'
      order by id desc limit 1`,
    [identityId],
  );
  return rows[0] as { outcome: string; details: Record<string, string> } | undefined;
}

/** A tenant that trusts GitHub Actions (inline key) and a service bound to one repository's main branch. */
async function githubSetup(policies: unknown[] = [{ path: 'shared/acme/*', capabilities: ['read'] }]) {
  const tenant = await createTenant(t.app);
  const key = await signingKey('ES256');
  const issuer = await trust(tenant, {
    name: 'github-actions',
    issuer: GITHUB,
    jwks: { keys: [key.publicJwk] },
    algorithms: ['ES256'],
    maxTokenAgeSeconds: 600,
  });
  const identity = await federatedIdentity(tenant, {
    policies,
    federation: [{ issuer: 'github-actions', claims: { repository: 'acme/api', ref: 'refs/heads/main' } }],
  });
  const token = (extra = {}, o = {}) =>
    mint(key, githubClaims('acme/api', 'refs/heads/main', audienceOf(tenant), extra), o);
  return { tenant, key, issuer, identity, token };
}

async function refused(identity: { id: string; clientId: string }, subjectToken: string, reason: string) {
  const res = await exchange(identity.clientId, subjectToken);
  expect(res.statusCode).toBe(401);
  expect(res.json()).toMatchObject({
    error: { code: 'unauthorized', message: 'the subject token is not accepted for this identity' },
  });
  expect((await lastLogin(identity.id))?.details.reason).toBe(reason);
}

describe('trusted issuers (tenant admin)', () => {
  it('creates, lists, reads, updates and deletes an issuer; the default audience is the tenant’s own', async () => {
    const tenant = await createTenant(t.app);
    const key = await signingKey();
    const created = await trust(tenant, {
      name: 'k8s-prod',
      issuer: 'https://k8s.example',
      jwks: { keys: [key.publicJwk] },
    });
    expect(created).toMatchObject({
      name: 'k8s-prod',
      audiences: [audienceOf(tenant)],
      algorithms: ['RS256', 'ES256'],
      maxTokenAgeSeconds: 3600,
      clockSkewSeconds: 30,
    });
    const list = await api(tenant.adminToken, 'GET', '/v1/trust/issuers');
    expect((list.json() as { items: TrustedIssuer[] }).items.map((i) => i.id)).toEqual([created.id]);
    const patched = await api(tenant.adminToken, 'PATCH', `/v1/trust/issuers/${created.id}`, { clockSkewSeconds: 5 });
    expect(patched.json()).toMatchObject({ clockSkewSeconds: 5 });
    const dup = await api(tenant.adminToken, 'POST', '/v1/trust/issuers', {
      name: 'k8s-prod',
      issuer: 'https://other.example',
      jwks: { keys: [key.publicJwk] },
    });
    expect(dup.statusCode).toBe(409);
    // Bound issuers stay until their bindings go.
    const bound = await federatedIdentity(tenant, {
      federation: [{ issuer: 'k8s-prod', subject: 'system:serviceaccount:*' }],
    });
    expect((await api(tenant.adminToken, 'DELETE', `/v1/trust/issuers/${created.id}`)).statusCode).toBe(409);
    await api(tenant.adminToken, 'PATCH', `/v1/identities/${bound.id}`, { federation: [] });
    expect((await api(tenant.adminToken, 'DELETE', `/v1/trust/issuers/${created.id}`)).statusCode).toBe(204);
    expect((await api(tenant.adminToken, 'GET', `/v1/trust/issuers/${created.id}`)).statusCode).toBe(404);
  });

  it('refuses bad input: alg none or HS256, private key members, a binding naming no trusted issuer', async () => {
    const tenant = await createTenant(t.app);
    const key = await signingKey();
    for (const algorithms of [['none'], ['HS256']]) {
      const res = await api(tenant.adminToken, 'POST', '/v1/trust/issuers', {
        name: 'x',
        issuer: 'https://x.example',
        jwks: { keys: [key.publicJwk] },
        algorithms,
      });
      expect(res.statusCode).toBe(400);
    }
    const priv = await api(tenant.adminToken, 'POST', '/v1/trust/issuers', {
      name: 'x',
      issuer: 'https://x.example',
      jwks: { keys: [key.privateJwk] },
    });
    expect(priv.statusCode).toBe(400);
    const res = await api(tenant.adminToken, 'POST', '/v1/identities', {
      name: 'typo',
      role: 'service',
      federation: [{ issuer: 'githb-actions', subject: 'repo:*' }],
    });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({ error: { message: 'no trusted issuer named githb-actions' } });
  });
});

describe('federated login against a real OpenID provider', () => {
  it('discovers the provider, verifies its JWT access token, and keeps working after it rotates its keys', async () => {
    const tenant = await createTenant(t.app);
    const op = await openIdProvider(audienceOf(tenant));
    cleanups.push(op.close);
    await trust(tenant, { name: 'corp-oidc', issuer: op.issuer, jwks: { discovery: true }, algorithms: ['RS256'] });
    const identity = await federatedIdentity(tenant, {
      policies: [{ path: 'shared/ops/*', capabilities: ['read'] }],
      federation: [{ issuer: 'corp-oidc', subject: op.clientId }],
    });
    const first = await exchange(identity.clientId, await op.token());
    expect(first.statusCode, first.body).toBe(200);
    const coffer = (first.json() as TokenResponse).accessToken;
    const me = await api(coffer, 'GET', '/v1/auth/whoami');
    expect(me.json()).toMatchObject({ identityId: identity.id, role: 'service' });
    expect(await lastLogin(identity.id)).toMatchObject({
      outcome: 'allowed',
      details: { method: 'federation', issuer: 'corp-oidc', subject: op.clientId },
    });

    // Unknown kid after rotation: the cached keys are refetched once, and the new key verifies.
    const oldKid = op.kid;
    await op.rotate();
    expect(op.kid).not.toBe(oldKid);
    const rotated = await op.token();
    expect((await import('jose')).decodeProtectedHeader(rotated).kid).toBe(op.kid);
    expect((await exchange(identity.clientId, rotated)).statusCode).toBe(200);
  });
});

describe('tokens shaped like GitHub Actions and Kubernetes', () => {
  it('GitHub Actions: a workflow of acme/api on main logs in and reads by a claim-templated policy', async () => {
    const { tenant, identity, token } = await githubSetup([
      { path: 'shared/{{claims.repository_owner}}/*', capabilities: ['read'] },
    ]);
    await api(tenant.adminToken, 'PUT', '/v1/secrets/shared/acme/DEPLOY_KEY', { value: 'acme-deploy-key' });
    await api(tenant.adminToken, 'PUT', '/v1/secrets/shared/other/DEPLOY_KEY', { value: 'other-deploy-key' });
    const res = await exchange(identity.clientId, await token());
    expect(res.statusCode, res.body).toBe(200);
    const coffer = (res.json() as TokenResponse).accessToken;
    expect(decodeJwt(coffer)).toMatchObject({ clm: { repository_owner: 'acme' } });
    expect((await api(coffer, 'GET', '/v1/secrets/shared/acme/DEPLOY_KEY')).json()).toMatchObject({
      value: 'acme-deploy-key',
    });
    expect((await api(coffer, 'GET', '/v1/secrets/shared/other/DEPLOY_KEY')).statusCode).toBe(403);
    expect(await lastLogin(identity.id)).toMatchObject({
      details: { 'claim.repository': 'acme/api', 'claim.ref': 'refs/heads/main' },
    });
  });

  it('Kubernetes: a projected service-account token of the payments namespace, keys from a JWKS URI', async () => {
    const tenant = await createTenant(t.app);
    const key = await signingKey('RS256');
    const jwks = await jwksServer([key.publicJwk]);
    cleanups.push(jwks.close);
    const cluster = 'https://kubernetes.default.svc.cluster.local';
    await trust(tenant, { name: 'k8s-prod', issuer: cluster, jwks: { uri: jwks.url }, algorithms: ['RS256'] });
    const identity = await federatedIdentity(tenant, {
      federation: [
        {
          issuer: 'k8s-prod',
          subject: 'system:serviceaccount:payments:*',
          claims: { 'kubernetes.io.namespace': 'payments' },
        },
      ],
    });
    const ok = await exchange(
      identity.clientId,
      await mint(key, kubernetesClaims(cluster, 'payments', 'api', audienceOf(tenant))),
    );
    expect(ok.statusCode, ok.body).toBe(200);
    await refused(
      identity,
      await mint(key, kubernetesClaims(cluster, 'billing', 'api', audienceOf(tenant))),
      'claim_mismatch',
    );
  });
});

describe('each refusal: one uniform 401, the precise reason in the audit log', () => {
  it('wrong issuer', async () => {
    const s = await githubSetup();
    await refused(s.identity, await s.token({ iss: 'https://evil.example' }), 'unknown_issuer');
  });

  it("another tenant's audience", async () => {
    const a = await githubSetup();
    const b = await githubSetup();
    // A token minted for tenant B (its default audience), signed by a key tenant A trusts, is useless at A.
    const forB = await mint(a.key, githubClaims('acme/api', 'refs/heads/main', audienceOf(b.tenant)));
    await refused(a.identity, forB, 'bad_audience');
  });

  it('expired', async () => {
    const s = await githubSetup();
    await refused(s.identity, await s.token({}, { iatOffset: -300, expiresIn: 120 }), 'expired');
  });

  it('not yet valid', async () => {
    const s = await githubSetup();
    await refused(s.identity, await s.token({ nbf: Math.floor(Date.now() / 1000) + 600 }), 'not_yet_valid');
  });

  it('too old (issued longer ago than maxTokenAgeSeconds, though not expired)', async () => {
    const s = await githubSetup();
    await refused(s.identity, await s.token({}, { iatOffset: -900, expiresIn: 3600 }), 'too_old');
  });

  it('replayed', async () => {
    const s = await githubSetup();
    const once = await s.token();
    expect((await exchange(s.identity.clientId, once)).statusCode).toBe(200);
    await refused(s.identity, once, 'replayed');
    // Without a jti, the token itself is what cannot be used twice.
    const noJti = await s.token({ jti: undefined });
    expect((await exchange(s.identity.clientId, noJti)).statusCode).toBe(200);
    await refused(s.identity, noJti, 'replayed');
  });

  it('alg: none', async () => {
    const s = await githubSetup();
    const claims = githubClaims('acme/api', 'refs/heads/main', audienceOf(s.tenant));
    const now = Math.floor(Date.now() / 1000);
    const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const unsigned = `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ ...claims, iat: now, exp: now + 300 })}.`;
    await refused(s.identity, unsigned, 'bad_algorithm');
  });

  it('HS256 (signed with the public key as an HMAC secret)', async () => {
    const s = await githubSetup();
    const claims = githubClaims('acme/api', 'refs/heads/main', audienceOf(s.tenant));
    const hs = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'HS256', kid: s.key.kid })
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(new TextEncoder().encode(JSON.stringify(s.key.publicJwk)));
    await refused(s.identity, hs, 'bad_algorithm');
  });

  it('unknown kid', async () => {
    const s = await githubSetup();
    const stranger = await signingKey('ES256');
    await refused(
      s.identity,
      await mint(stranger, githubClaims('acme/api', 'refs/heads/main', audienceOf(s.tenant))),
      'unknown_kid',
    );
  });

  it('a valid kid with a forged signature', async () => {
    const s = await githubSetup();
    const forger = await signingKey('ES256', s.key.kid);
    await refused(
      s.identity,
      await mint(forger, githubClaims('acme/api', 'refs/heads/main', audienceOf(s.tenant))),
      'bad_signature',
    );
  });

  it('claim mismatch (another branch)', async () => {
    const s = await githubSetup();
    await refused(s.identity, await s.token({ ref: 'refs/heads/feature' }), 'claim_mismatch');
  });

  it('no bindings: an identity whose bindings are all removed cannot log in by federation', async () => {
    const s = await githubSetup();
    const before = await s.token();
    await api(s.tenant.adminToken, 'PATCH', `/v1/identities/${s.identity.id}`, { federation: [] });
    await refused(s.identity, before, 'no_bindings');
  });

  it('a disabled identity', async () => {
    const s = await githubSetup();
    await api(s.tenant.adminToken, 'PATCH', `/v1/identities/${s.identity.id}`, { disabled: true });
    await refused(s.identity, await s.token(), 'identity_disabled');
  });

  it('a JWKS that cannot be fetched never lets a token through', async () => {
    const tenant = await createTenant(t.app);
    const key = await signingKey('ES256');
    const jwks = await jwksServer([key.publicJwk]);
    await jwks.close();
    await trust(tenant, {
      name: 'gone',
      issuer: 'https://gone.example',
      jwks: { uri: jwks.url },
      algorithms: ['ES256'],
    });
    const identity = await federatedIdentity(tenant, { federation: [{ issuer: 'gone', subject: '*' }] });
    await refused(
      identity,
      await mint(key, { iss: 'https://gone.example', aud: audienceOf(tenant), sub: 'x' }),
      'jwks_unavailable',
    );
  });
});

describe('claim-templated policies', () => {
  it('a missing templated claim matches nothing', async () => {
    const s = await githubSetup([{ path: 'sandbox/{{claims.sandbox_id}}/*', capabilities: ['read'] }]);
    await api(s.tenant.adminToken, 'PUT', '/v1/secrets/sandbox/sbx-1/KEY', { value: 'v' });
    const res = await exchange(s.identity.clientId, await s.token());
    const coffer = (res.json() as TokenResponse).accessToken;
    expect((await api(coffer, 'GET', '/v1/secrets/sandbox/sbx-1/KEY')).statusCode).toBe(403);
  });

  it('template escaping: a claim holding ../* or a / matches only itself, so nothing', async () => {
    const s = await githubSetup([{ path: 'sandbox/{{claims.sandbox_id}}/*', capabilities: ['read', 'list'] }]);
    await api(s.tenant.adminToken, 'PUT', '/v1/secrets/sandbox/sbx-1/KEY', { value: 'v1' });
    await api(s.tenant.adminToken, 'PUT', '/v1/secrets/sandbox/sbx-2/KEY', { value: 'v2' });
    for (const hostile of ['../*', '*', 'sbx-1/KEY', '**', '..', 'sbx-?']) {
      const res = await exchange(s.identity.clientId, await s.token({ sandbox_id: hostile }));
      expect(res.statusCode).toBe(200);
      const coffer = (res.json() as TokenResponse).accessToken;
      for (const owner of ['sbx-1', 'sbx-2']) {
        expect((await api(coffer, 'GET', `/v1/secrets/sandbox/${owner}/KEY`)).statusCode, `${hostile} ${owner}`).toBe(
          403,
        );
      }
    }
    const honest = await exchange(s.identity.clientId, await s.token({ sandbox_id: 'sbx-2' }));
    const coffer = (honest.json() as TokenResponse).accessToken;
    expect((await api(coffer, 'GET', '/v1/secrets/sandbox/sbx-2/KEY')).statusCode).toBe(200);
    expect((await api(coffer, 'GET', '/v1/secrets/sandbox/sbx-1/KEY')).statusCode).toBe(403);
  });
});

describe('environment from a verified claim', () => {
  it("GitHub's `environment` claim chooses the environment; a hostile or missing claim chooses none", async () => {
    const s = await githubSetup([
      { path: 'shared/app/*', capabilities: ['read'], environments: ['{{claims.environment}}'] },
    ]);
    for (const env of ['staging', 'production']) {
      await api(s.tenant.adminToken, 'POST', '/v1/environments', { slug: env, name: env });
      await api(s.tenant.adminToken, 'PUT', `/v1/secrets/shared/app/KEY?env=${env}`, { value: `${env}-value` });
    }
    await api(s.tenant.adminToken, 'PUT', '/v1/secrets/shared/app/KEY', { value: 'default-value' });
    const read = async (claims: Record<string, string>, env: string) => {
      const res = await exchange(s.identity.clientId, await s.token(claims));
      expect(res.statusCode).toBe(200);
      return (await api((res.json() as TokenResponse).accessToken, 'GET', `/v1/secrets/shared/app/KEY?env=${env}`))
        .statusCode;
    };
    expect(await read({ environment: 'staging' }, 'staging')).toBe(200);
    expect(await read({ environment: 'staging' }, 'production')).toBe(404);
    expect(await read({ environment: 'production' }, 'production')).toBe(200);
    // A claim can never act as a glob, and a missing one grants nothing (default included: 403, as before).
    for (const hostile of ['*', 'prod*', 'staging/x', '..']) {
      expect(await read({ environment: hostile }, 'staging'), hostile).toBe(404);
      expect(await read({ environment: hostile }, 'production'), hostile).toBe(404);
    }
    expect(await read({}, 'staging')).toBe(404);
    expect(await read({}, 'default')).toBe(403);
  });
});

describe('leaks', () => {
  it('no subject token reaches a log line or an audit row', async () => {
    const s = await githubSetup();
    const good = await s.token();
    const bad = await s.token({ ref: 'refs/heads/nope' });
    await exchange(s.identity.clientId, good);
    await exchange(s.identity.clientId, bad);
    const logs = t.logs.join('\n');
    const { rows } = await owner.query(
      `select row_to_json(e)::text as r from coffer.audit_events e where tenant_id = $1`,
      [s.tenant.tenant.id],
    );
    const audit = rows.map((r: { r: string }) => r.r).join('\n');
    for (const token of [good, bad]) {
      const signature = token.split('.')[2] as string;
      expect(logs).not.toContain(signature);
      expect(audit).not.toContain(signature);
    }
  });
});
