import { randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, type JWK, type JWTPayload, SignJWT } from 'jose';

export interface SigningKey {
  kid: string;
  alg: 'ES256' | 'RS256';
  privateKey: Parameters<SignJWT['sign']>[0];
  publicJwk: JWK;
  privateJwk: JWK;
}

/** A key pair made at test time: no key material is ever committed. */
export async function signingKey(alg: 'ES256' | 'RS256' = 'ES256', kid: string = randomUUID()): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return {
    kid,
    alg,
    privateKey,
    publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' },
    privateJwk: { ...(await exportJWK(privateKey)), kid, alg, use: 'sig' },
  };
}

/** A JWT signed by a local key, shaped as the caller says (Kubernetes, GitHub Actions, …). */
export async function mint(
  key: SigningKey,
  claims: JWTPayload,
  o: { iatOffset?: number; expiresIn?: number; header?: Record<string, unknown> } = {},
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const iat = now + (o.iatOffset ?? 0);
  return new SignJWT({ jti: randomUUID(), ...claims })
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT', ...o.header })
    .setIssuedAt(iat)
    .setExpirationTime(iat + (o.expiresIn ?? 600))
    .sign(key.privateKey);
}

/** GitHub Actions' OIDC token claims, for a workflow run of `repo` on `ref`. */
export function githubClaims(repo: string, ref: string, audience: string, extra: JWTPayload = {}): JWTPayload {
  const [owner] = repo.split('/');
  return {
    iss: 'https://token.actions.githubusercontent.com',
    aud: audience,
    sub: `repo:${repo}:ref:${ref}`,
    repository: repo,
    repository_owner: owner,
    ref,
    ref_type: 'branch',
    workflow: 'deploy',
    event_name: 'push',
    run_id: String(Math.floor(Math.random() * 1e9)),
    actor: 'octocat',
    ...extra,
  };
}

/** A Kubernetes projected service-account token's claims. */
export function kubernetesClaims(issuer: string, namespace: string, serviceAccount: string, audience: string) {
  return {
    iss: issuer,
    aud: [audience],
    sub: `system:serviceaccount:${namespace}:${serviceAccount}`,
    'kubernetes.io': {
      namespace,
      serviceaccount: { name: serviceAccount, uid: randomUUID() },
      pod: { name: `${serviceAccount}-7d9f8-abcde`, uid: randomUUID() },
    },
  };
}

/** A JWKS endpoint on loopback whose keys the test can change (an issuer rotating its keys). */
export async function jwksServer(
  keys: JWK[],
): Promise<{ url: string; set(keys: JWK[]): void; hits(): number; close(): Promise<void> }> {
  let current = keys;
  let hits = 0;
  const server = http.createServer((_req, res) => {
    hits++;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ keys: current }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/keys`,
    set: (k) => {
      current = k;
    },
    hits: () => hits,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

/**
 * A real OpenID provider (the `oidc-provider` package) on loopback: discovery, a JWKS endpoint and the client
 * credentials grant issuing JWT access tokens for the audience the test names. `rotate()` restarts it under a new
 * signing key at the same issuer URL, as an issuer rotating its keys does.
 */
export async function openIdProvider(audience: string) {
  // Imported here, not at the top: it is the heaviest module the test support loads, and most of the files that
  // import this module only mint tokens.
  const { default: Provider } = await import('oidc-provider');
  const clientId = `workload-${randomBytes(4).toString('hex')}`;
  const clientSecret = randomBytes(24).toString('base64url');
  // One server for the provider's whole life; rotation swaps the provider behind it, as an issuer's keys change
  // without its address changing (and without dropping the connections clients keep alive).
  let handler: http.RequestListener = (_q, r) => r.end();
  const server = http.createServer((q, r) => handler(q, r));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  let key = await signingKey('RS256');

  const build = (keys: JWK[]) =>
    new Provider(issuer, {
      clients: [
        {
          client_id: clientId,
          client_secret: clientSecret,
          grant_types: ['client_credentials'],
          redirect_uris: [],
          response_types: [],
        },
      ],
      jwks: { keys: keys as never },
      ttl: { ClientCredentials: 300 },
      features: {
        clientCredentials: { enabled: true },
        resourceIndicators: {
          enabled: true,
          defaultResource: () => 'urn:coffer',
          useGrantedResource: () => true,
          getResourceServerInfo: () => ({
            scope: 'secrets',
            audience,
            accessTokenFormat: 'jwt',
            accessTokenTTL: 300,
            jwt: { sign: { alg: 'RS256' } },
          }),
        },
      },
    });

  const start = (keys: JWK[]) => {
    handler = build(keys).callback();
  };
  start([key.privateJwk]);

  return {
    issuer,
    get kid() {
      return key.kid;
    },
    /** A JWT access token from the provider's token endpoint (client credentials). */
    async token(): Promise<string> {
      const res = await fetch(`${issuer}/token`, {
        method: 'POST',
        headers: {
          authorization: `Basic ${Buffer.from(`${clientId}:${clientSecret}`).toString('base64')}`,
          'content-type': 'application/x-www-form-urlencoded',
        },
        body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'secrets', resource: 'urn:coffer' }),
      });
      const body = (await res.json()) as { access_token?: string };
      if (!res.ok || !body.access_token) throw new Error(`token endpoint: ${res.status} ${JSON.stringify(body)}`);
      return body.access_token;
    },
    clientId,
    /** Signs with a new key from now on; the old one is no longer published. */
    async rotate(): Promise<void> {
      key = await signingKey('RS256');
      start([key.privateJwk]);
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
