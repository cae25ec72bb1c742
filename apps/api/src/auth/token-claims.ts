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
  /**
   * A federated login's verified claims that the identity's policies are templated on (`{{claims.x}}`), as the
   * upstream token had them: signed into Coffer's token so that every request can fill the templates.
   */
  clm: z.record(z.string().max(128), z.string().max(512)).optional(),
  /** The session a token was issued by: revoking the session stops the token on its next request. */
  sid: z.uuid().optional(),
});
export type TokenClaims = z.infer<typeof TokenClaims>;
