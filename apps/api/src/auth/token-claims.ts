import { PrincipalRole } from '@coffer/contracts';
import { z } from 'zod';

/** The claims Coffer puts in (and requires of) every access token, besides iss/aud/exp/iat checked by the verifier. */
export const TokenClaims = z.object({
  sub: z.uuid(),
  tid: z.uuid(),
  role: PrincipalRole,
  /** Credential version: rotating the client secret bumps it, and older tokens stop working. */
  cv: z.number().int().positive(),
  jti: z.string().min(16),
  iat: z.number().int(),
  exp: z.number().int(),
});
export type TokenClaims = z.infer<typeof TokenClaims>;
