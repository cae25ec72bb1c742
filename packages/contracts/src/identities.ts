import { z } from 'zod';
import { page, storableText, Timestamp, Uuid } from './common.ts';
import { ClientCredentials } from './tenants.ts';
import { FederationBinding } from './trust.ts';

export const IdentityRole = z.enum(['admin', 'service', 'auditor']).meta({ id: 'IdentityRole' });
export type IdentityRole = z.infer<typeof IdentityRole>;

export const Capability = z.enum(['read', 'list', 'write', 'delete', 'rotate']).meta({ id: 'Capability' });
export type Capability = z.infer<typeof Capability>;

/** `{{claims.x}}` in a policy path: filled from the caller's verified federation claims (see FederationBinding). */
const PATH_PART = String.raw`(?:[A-Za-z0-9_.*?-]|\{\{claims\.[A-Za-z0-9_:-]+(?:\.[A-Za-z0-9_:-]+)*\}\})+`;

/**
 * A glob over `kind/owner/name`. `*` matches within one segment (never across `/`),
 * `**` matches any number of whole segments, `?` one character. `{{claims.sandbox_id}}` stands for a verified
 * claim of a federated caller, matched literally: a claim value never acts as a glob or a separator.
 */
/** Matching is linear in pattern × name whatever the pattern, but a bound keeps each policy's cost small and known. */
export const POLICY_PATH_MAX_STARS = 8;

export const PolicyPath = z
  .string()
  .min(1)
  .max(300)
  .regex(
    new RegExp(`^${PATH_PART}(?:/${PATH_PART}){0,2}$`),
    'must be a glob over kind/owner/name, e.g. sandbox/sbx-42/* or sandbox/{{claims.sandbox_id}}/*',
  )
  .refine(
    (p) => p.split('*').length - 1 <= POLICY_PATH_MAX_STARS,
    `must hold at most ${POLICY_PATH_MAX_STARS} * characters`,
  );

/** `{{claims.environment}}` in an environment glob: a verified claim of a federated caller, matched literally. */
const ENV_PART = String.raw`(?:[a-z0-9_*?-]|\{\{claims\.[A-Za-z0-9_:-]+(?:\.[A-Za-z0-9_:-]+)*\}\})+`;

export const PolicyEnvironment = z
  .string()
  .min(1)
  .max(200)
  .regex(
    new RegExp(`^${ENV_PART}$`),
    'must be an environment slug or glob, e.g. staging, prod-*, {{claims.environment}}',
  )
  .refine(
    (p) => p.split('*').length - 1 <= POLICY_PATH_MAX_STARS,
    `must hold at most ${POLICY_PATH_MAX_STARS} * characters`,
  );

const policyShape = {
  path: PolicyPath,
  environments: z
    .array(PolicyEnvironment)
    .min(1)
    .max(20)
    .optional()
    .describe('Environments (slugs or globs) the policy applies in; absent: only the tenant’s `default`'),
  capabilities: z
    .array(Capability)
    .min(1)
    .max(5)
    .refine((caps) => new Set(caps).size === caps.length, 'must not repeat a capability'),
};

/** As the server answers it: lenient, so an older client still reads a policy that gained a field. */
export const Policy = z.object(policyShape).meta({ id: 'Policy' });
export type Policy = z.infer<typeof Policy>;

/** As a client writes it: a misspelt field is refused, never dropped. */
export const PolicyRequest = z.strictObject(policyShape);

export const IdentityName = storableText(z.string().trim().min(1).max(128));
export const TokenTtlSeconds = z.number().int().min(60).max(86_400);

const policiesOnlyForServices = (v: { role?: IdentityRole; policies?: Policy[] | undefined }) =>
  v.role === undefined || v.role === 'service' || v.policies === undefined || v.policies.length === 0;

export const CreateIdentityRequest = z
  .strictObject({
    name: IdentityName,
    role: IdentityRole,
    policies: z.array(PolicyRequest).max(100).optional(),
    tokenTtlSeconds: TokenTtlSeconds.optional(),
    federation: z
      .array(FederationBinding)
      .max(20)
      .optional()
      .describe('Workload identity: tokens of trusted issuers that may log in as this identity'),
  })
  .refine(policiesOnlyForServices, { path: ['policies'], message: 'only service identities carry policies' })
  .meta({ id: 'CreateIdentityRequest' });
export type CreateIdentityRequest = z.infer<typeof CreateIdentityRequest>;

export const UpdateIdentityRequest = z
  .strictObject({
    name: IdentityName.optional(),
    policies: z.array(PolicyRequest).max(100).optional(),
    disabled: z.boolean().optional(),
    tokenTtlSeconds: TokenTtlSeconds.nullable().optional(),
    federation: z.array(FederationBinding).max(20).optional().describe('Replaces the bindings; [] removes them'),
  })
  .refine((v) => Object.values(v).some((x) => x !== undefined), 'must change at least one field')
  .meta({ id: 'UpdateIdentityRequest' });
export type UpdateIdentityRequest = z.infer<typeof UpdateIdentityRequest>;

export const Identity = z
  .object({
    id: Uuid,
    tenantId: Uuid,
    clientId: z.string(),
    name: z.string(),
    role: IdentityRole,
    policies: z.array(Policy),
    federation: z.array(FederationBinding),
    tokenTtlSeconds: z.number().int().nullable().describe('null: the server default'),
    disabled: z.boolean(),
    createdAt: Timestamp,
    updatedAt: Timestamp,
    secretRotatedAt: Timestamp,
  })
  .meta({ id: 'Identity' });
export type Identity = z.infer<typeof Identity>;

export const CreateIdentityResponse = z
  .object({ identity: Identity, clientSecret: z.string().describe('Shown once') })
  .meta({ id: 'CreateIdentityResponse' });
export type CreateIdentityResponse = z.infer<typeof CreateIdentityResponse>;

export const RotateClientSecretResponse = ClientCredentials.meta({ id: 'RotateClientSecretResponse' });

export const IdentityPage = page(Identity).meta({ id: 'IdentityPage' });
export type IdentityPage = z.infer<typeof IdentityPage>;

export const IdentityIdParams = z.object({ id: Uuid });

/** A platform admin: creates tenants, rotates the master key, manages the other platform admins. */
export const PlatformAdmin = z
  .object({
    id: Uuid,
    clientId: z.string(),
    name: z.string(),
    disabled: z.boolean(),
    createdAt: Timestamp,
    updatedAt: Timestamp,
    secretRotatedAt: Timestamp,
  })
  .meta({ id: 'PlatformAdmin' });
export type PlatformAdmin = z.infer<typeof PlatformAdmin>;

export const CreatePlatformAdminRequest = z
  .strictObject({ name: IdentityName })
  .meta({ id: 'CreatePlatformAdminRequest' });
export type CreatePlatformAdminRequest = z.infer<typeof CreatePlatformAdminRequest>;

export const CreatePlatformAdminResponse = z
  .object({ admin: PlatformAdmin, clientSecret: z.string().describe('Shown once') })
  .meta({ id: 'CreatePlatformAdminResponse' });
export type CreatePlatformAdminResponse = z.infer<typeof CreatePlatformAdminResponse>;

export const PlatformAdminList = z.object({ items: z.array(PlatformAdmin) }).meta({ id: 'PlatformAdminList' });
export type PlatformAdminList = z.infer<typeof PlatformAdminList>;

export const UpdatePlatformAdminRequest = z
  .strictObject({ disabled: z.boolean() })
  .meta({ id: 'UpdatePlatformAdminRequest' });
export type UpdatePlatformAdminRequest = z.infer<typeof UpdatePlatformAdminRequest>;
