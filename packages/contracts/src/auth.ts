import { z } from 'zod';
import { storableText, Timestamp, Uuid } from './common.ts';

export const ClientId = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9_.-]+$/, 'must be a client id issued by Coffer');

/** An Ed25519 public key: its 32 raw bytes, base64url without padding (the `x` of its JWK). */
export const SessionPublicKey = z
  .string()
  .regex(/^[A-Za-z0-9_-]{43}$/, 'must be an Ed25519 public key: 32 bytes, base64url')
  .describe('Ed25519 public key of the machine (32 raw bytes, base64url, as the `x` of its JWK)');

/**
 * Ask for a session with the login: besides the access token, a refresh credential that renews it until the
 * session's absolute end. Each refresh must be signed with the private key of `publicKey`, which never leaves the
 * machine, so the refresh credential alone (a copied file, a leaked backup) renews nothing.
 */
export const SessionRequest = z
  .strictObject({
    publicKey: SessionPublicKey,
    name: storableText(z.string().min(1).max(128))
      .optional()
      .describe('A label shown in the session list, e.g. the machine’s host name'),
  })
  .meta({ id: 'SessionRequest' });
export type SessionRequest = z.infer<typeof SessionRequest>;

export const ClientCredentialsTokenRequest = z
  .object({
    clientId: ClientId,
    clientSecret: z.string().min(1).max(512),
    session: SessionRequest.optional(),
  })
  .strict()
  .meta({ id: 'ClientCredentialsTokenRequest' });

/** Workload identity federation: a token the workload's platform signed, for an identity bound to its claims. */
export const FederatedTokenRequest = z
  .object({
    identity: ClientId.describe('The client id of the identity to act as'),
    subjectToken: z
      .string()
      .min(1)
      .max(16_384)
      .regex(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/, 'must be a compact JWT')
      .describe('A JWT from an issuer the identity’s tenant trusts (Kubernetes, GitHub Actions, any OIDC)'),
    session: SessionRequest.optional(),
  })
  .strict()
  .meta({ id: 'FederatedTokenRequest' });

export const TokenRequest = z
  .union([ClientCredentialsTokenRequest, FederatedTokenRequest])
  .meta({ id: 'TokenRequest' });
export type TokenRequest = z.infer<typeof TokenRequest>;

/** The refresh credential of a session: shown once, kept by the server only as a hash, replaced at every refresh. */
export const IssuedSession = z
  .object({
    id: Uuid,
    refreshToken: z.string().describe('Single use: each refresh answers the next one. A reused one ends the session'),
    expiresAt: Timestamp.describe('The session’s absolute end: no refresh extends it'),
  })
  .meta({ id: 'IssuedSession' });
export type IssuedSession = z.infer<typeof IssuedSession>;

export const TokenResponse = z
  .object({
    accessToken: z.string(),
    tokenType: z.literal('Bearer'),
    expiresIn: z.number().int().positive().describe('Seconds until the token expires'),
    session: IssuedSession.optional().describe('Present when the login asked for a session, and on every refresh'),
  })
  .meta({ id: 'TokenResponse' });
export type TokenResponse = z.infer<typeof TokenResponse>;

/** The tenant id that platform identities belong to: they act on tenants, never inside one. */
export const PLATFORM_TENANT_ID = '00000000-0000-0000-0000-000000000000';

export const PrincipalRole = z.enum(['platform', 'admin', 'service', 'auditor']);
export type PrincipalRole = z.infer<typeof PrincipalRole>;

export const WhoAmI = z
  .object({
    identityId: Uuid,
    clientId: ClientId,
    name: z.string(),
    tenantId: Uuid,
    role: PrincipalRole,
    policies: z.array(z.object({ path: z.string(), capabilities: z.array(z.string()) })),
    tokenExpiresAt: Timestamp,
  })
  .meta({ id: 'WhoAmI' });
export type WhoAmI = z.infer<typeof WhoAmI>;

export const Jwk = z.object({
  kty: z.literal('OKP'),
  crv: z.literal('Ed25519'),
  x: z.string(),
  kid: z.string(),
  alg: z.literal('EdDSA'),
  use: z.literal('sig'),
});
export const JwkSet = z.object({ keys: z.array(Jwk) }).meta({ id: 'JwkSet' });
export type JwkSet = z.infer<typeof JwkSet>;

/** What a refresh signs, as UTF-8: the session, the moment, and a hash of the refresh credential it presents. */
export function sessionRefreshMessage(sessionId: string, signedAt: string, refreshTokenSha256: string): string {
  return `coffer-session-refresh/v1\n${sessionId}\n${signedAt}\n${refreshTokenSha256}`;
}

export const RefreshToken = z
  .string()
  .regex(/^coffer_rt_[1-9][0-9]{0,8}_[A-Za-z0-9_-]{43}$/, 'must be a refresh token this server issued');

export const RefreshSessionRequest = z
  .strictObject({
    sessionId: Uuid,
    refreshToken: RefreshToken,
    signedAt: Timestamp.describe('When the client signed (within 5 minutes of the server’s clock)'),
    signature: z
      .string()
      .regex(/^[A-Za-z0-9_-]{86}$/, 'must be an Ed25519 signature: 64 bytes, base64url')
      .describe(
        'Ed25519 signature, by the key the session was opened with, over the UTF-8 text ' +
          '"coffer-session-refresh/v1\\n<sessionId>\\n<signedAt>\\n<base64url SHA-256 of refreshToken>"',
      ),
  })
  .meta({ id: 'RefreshSessionRequest' });
export type RefreshSessionRequest = z.infer<typeof RefreshSessionRequest>;
