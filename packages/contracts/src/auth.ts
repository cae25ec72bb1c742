import { z } from 'zod';
import { Timestamp, Uuid } from './common.ts';

export const ClientId = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9_.-]+$/, 'must be a client id issued by Coffer');

export const TokenRequest = z
  .strictObject({
    clientId: ClientId,
    clientSecret: z.string().min(1).max(512),
  })
  .meta({ id: 'TokenRequest' });
export type TokenRequest = z.infer<typeof TokenRequest>;

export const TokenResponse = z
  .object({
    accessToken: z.string(),
    tokenType: z.literal('Bearer'),
    expiresIn: z.number().int().positive().describe('Seconds until the token expires'),
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
