import { createHash, generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { type RefreshSessionRequest, sessionRefreshMessage, TokenResponse } from '@coffer/contracts';
import type { FastifyInstance } from 'fastify';

/** A person's session as a client holds it: the machine key, and the refresh credential of the moment. */
export interface TestSession {
  id: string;
  refreshToken: string;
  accessToken: string;
  expiresAt: string;
  privateKey: KeyObject;
  publicKey: string;
}

/** A machine key pair: the public half as the 32 raw bytes, base64url (the `x` of its JWK). */
export function machineKey(): { privateKey: KeyObject; publicKey: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { privateKey, publicKey: (publicKey.export({ format: 'jwk' }) as { x: string }).x };
}

/** Logs in with client credentials and asks for a session, bound to a fresh machine key. */
export async function openSession(
  app: FastifyInstance,
  clientId: string,
  clientSecret: string,
  name = 'test-machine',
): Promise<TestSession> {
  const key = machineKey();
  const res = await app.inject({
    method: 'POST',
    url: '/v1/auth/token',
    payload: { clientId, clientSecret, session: { publicKey: key.publicKey, name } },
  });
  if (res.statusCode !== 200) throw new Error(`session login: ${res.statusCode} ${res.body}`);
  const body = TokenResponse.parse(res.json());
  if (!body.session) throw new Error('the login answered no session');
  return {
    id: body.session.id,
    refreshToken: body.session.refreshToken,
    accessToken: body.accessToken,
    expiresAt: body.session.expiresAt,
    ...key,
  };
}

/** A refresh request body, signed now by the session's key unless told otherwise. */
export function refreshBody(
  s: Pick<TestSession, 'id' | 'refreshToken' | 'privateKey'>,
  o: { signedAt?: string; key?: KeyObject; refreshToken?: string } = {},
): RefreshSessionRequest {
  const refreshToken = o.refreshToken ?? s.refreshToken;
  const signedAt = o.signedAt ?? new Date().toISOString();
  const hash = createHash('sha256').update(refreshToken).digest('base64url');
  const signature = sign(
    null,
    Buffer.from(sessionRefreshMessage(s.id, signedAt, hash), 'utf8'),
    o.key ?? s.privateKey,
  ).toString('base64url');
  return { sessionId: s.id, refreshToken, signedAt, signature };
}

/** Refreshes; on success the session holds the new refresh credential and access token, as a client would keep. */
export async function refreshSession(app: FastifyInstance, s: TestSession, body = refreshBody(s)) {
  const res = await app.inject({ method: 'POST', url: '/v1/auth/refresh', payload: body });
  if (res.statusCode === 200) {
    const next = TokenResponse.parse(res.json());
    if (next.session) s.refreshToken = next.session.refreshToken;
    s.accessToken = next.accessToken;
  }
  return res;
}
