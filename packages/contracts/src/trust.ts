import { z } from 'zod';
import { storableText, Timestamp, Uuid } from './common.ts';

/** Text that PostgreSQL can store (text and jsonb refuse NUL): every string of these bodies is stored. */
const text = (min: number, max: number) => storableText(z.string().min(min).max(max));

/**
 * Signature algorithms an issuer may be pinned to. Asymmetric only: `none` and the HMAC family (whose key would be
 * the issuer's public key, or a secret Coffer would have to hold) are never accepted.
 */
export const FederationAlgorithm = z
  .enum(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'])
  .meta({ id: 'FederationAlgorithm' });
export type FederationAlgorithm = z.infer<typeof FederationAlgorithm>;

export const IssuerName = text(1, 64).regex(
  /^[a-z0-9][a-z0-9-]*$/,
  'must be lowercase letters, digits and dashes, e.g. github-actions',
);

const HttpsUrl = z
  .url({ protocol: /^https?$/ })
  .max(2048)
  .describe('An https URL (http only where the server allows it, for local issuers)');

/** One public JWK (RSA, EC or OKP). Private members are refused: an issuer's private key never belongs here. */
export const PublicJwk = z
  .object({
    kty: z.enum(['RSA', 'EC', 'OKP']),
    kid: text(1, 256).optional(),
    alg: text(0, 16).optional(),
    use: text(0, 16).optional(),
    key_ops: z.array(text(0, 32)).max(8).optional(),
    n: text(0, 2048).optional(),
    e: text(0, 16).optional(),
    crv: text(0, 16).optional(),
    x: text(0, 256).optional(),
    y: text(0, 256).optional(),
    x5c: z.array(text(0, 8192)).max(4).optional(),
    x5t: text(0, 128).optional(),
    'x5t#S256': text(0, 128).optional(),
  })
  .strict()
  .meta({ id: 'PublicJwk' });

export const JwksSource = z
  .union([
    z.object({ discovery: z.literal(true) }).strict(),
    z
      .object({
        uri: HttpsUrl,
        bearerTokenFile: text(1, 1024)
          .optional()
          .describe('A file on the Coffer host holding a bearer token for the JWKS request (a cluster that needs one)'),
      })
      .strict(),
    z.object({ keys: z.array(PublicJwk).min(1).max(20) }).strict(),
  ])
  .describe('Where the issuer’s signing keys come from: OIDC discovery at `issuer`, a JWKS URI, or inline keys')
  .meta({ id: 'JwksSource' });
export type JwksSource = z.infer<typeof JwksSource>;

const Audiences = z.array(text(1, 512)).min(1).max(10);
const MaxTokenAge = z.number().int().min(10).max(86_400);
const ClockSkew = z.number().int().min(0).max(300);

export const CreateIssuerRequest = z
  .object({
    name: IssuerName,
    issuer: text(1, 2048).describe('The exact `iss` of the tokens (an https URL for OIDC issuers)'),
    jwks: JwksSource,
    audiences: Audiences.optional().describe(
      'Accepted `aud` values. Default: this tenant’s own audience, `coffer:<tenant slug>`, so that a token minted ' +
        'for one tenant is useless at another',
    ),
    algorithms: z.array(FederationAlgorithm).min(1).max(10).optional().describe('Default: RS256 and ES256'),
    maxTokenAgeSeconds: MaxTokenAge.optional().describe('Refuse tokens issued longer ago than this. Default 3600'),
    clockSkewSeconds: ClockSkew.optional().describe('Tolerance for exp, nbf and iat. Default 30'),
  })
  .strict()
  .meta({ id: 'CreateIssuerRequest' });
export type CreateIssuerRequest = z.infer<typeof CreateIssuerRequest>;

export const UpdateIssuerRequest = z
  .object({
    jwks: JwksSource.optional(),
    audiences: Audiences.optional(),
    algorithms: z.array(FederationAlgorithm).min(1).max(10).optional(),
    maxTokenAgeSeconds: MaxTokenAge.optional(),
    clockSkewSeconds: ClockSkew.optional(),
  })
  .strict()
  .refine((v) => Object.values(v).some((x) => x !== undefined), 'must change at least one field')
  .meta({ id: 'UpdateIssuerRequest' });
export type UpdateIssuerRequest = z.infer<typeof UpdateIssuerRequest>;

export const TrustedIssuer = z
  .object({
    id: Uuid,
    name: z.string(),
    issuer: z.string(),
    jwks: JwksSource,
    audiences: z.array(z.string()),
    algorithms: z.array(FederationAlgorithm),
    maxTokenAgeSeconds: z.number().int(),
    clockSkewSeconds: z.number().int(),
    createdAt: Timestamp,
    updatedAt: Timestamp,
  })
  .meta({ id: 'TrustedIssuer' });
export type TrustedIssuer = z.infer<typeof TrustedIssuer>;

export const TrustedIssuerList = z.object({ items: z.array(TrustedIssuer) }).meta({ id: 'TrustedIssuerList' });

/**
 * A claim binding: which verified tokens of an issuer may act as an identity. Every listed claim must match,
 * exactly or by glob (`*` within a segment, `?` one character); nested claims are addressed by a dotted path
 * (`kubernetes.io.namespace`).
 */
export const FederationBinding = z
  .object({
    issuer: text(1, 64).describe('The trusted issuer’s name or id'),
    subject: text(1, 512).optional().describe('A glob over `sub`'),
    claims: z
      .record(
        text(1, 128).regex(/^[A-Za-z0-9_:/-]+(\.[A-Za-z0-9_:/-]+)*$/, 'must be a claim name or a dotted path'),
        text(1, 512),
      )
      .refine((c) => Object.keys(c).length <= 20, 'at most 20 claims')
      .optional(),
  })
  .strict()
  .refine((b) => b.subject !== undefined || (b.claims !== undefined && Object.keys(b.claims).length > 0), {
    message: 'a binding must constrain the subject or at least one claim',
  })
  .meta({ id: 'FederationBinding' });
export type FederationBinding = z.infer<typeof FederationBinding>;
