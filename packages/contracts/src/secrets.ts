import { z } from 'zod';
import { Cursor, INT4_MAX, storableText, Timestamp, Uuid } from './common.ts';
import { EnvironmentSlug } from './environment-slug.ts';
import { SECRET_KINDS, SECRET_NAME_PATTERN, SECRET_OWNER_PATTERN } from './patterns.ts';

export const SecretKind = z.enum(SECRET_KINDS).meta({ id: 'SecretKind' });
export type SecretKind = z.infer<typeof SecretKind>;

/** Sandbox id, user id or group name. */
export const SecretOwner = z
  .string()
  .regex(SECRET_OWNER_PATTERN, 'must be 1-128 letters, digits, _ . - starting with a letter or digit');

/** Letters, digits, `_ . -`: a name with `.` or `-` is not a shell variable name (`export --format shell` says so). */
export const SecretName = z
  .string()
  .regex(SECRET_NAME_PATTERN, 'must be 1-128 letters, digits, _ . - starting with a letter or _')
  // Names are keys of bundles. `__proto__` is the one key that JSON bodies refuse (prototype poisoning) and that
  // object records drop, so such a secret could be written but never travel in a bundle: refuse it up front.
  .refine((n) => n !== '__proto__', 'is reserved: __proto__ cannot travel as a bundle key');

export const SecretPathParams = z.object({ kind: SecretKind, owner: SecretOwner, name: SecretName });
export const OwnerParams = z.object({ kind: SecretKind, owner: SecretOwner });

export const BuiltinFormat = z
  .enum([
    'stripe-secret-key',
    'stripe-webhook-secret',
    'url',
    'postgres-url',
    'pem-private-key',
    'uuid',
    'base64',
    'hex',
    'json',
  ])
  .meta({ id: 'BuiltinFormat' });
export type BuiltinFormat = z.infer<typeof BuiltinFormat>;

export const CustomFormat = z
  .object({
    pattern: z
      .string()
      .min(1)
      .max(500)
      .optional()
      .describe('A PostgreSQL (POSIX ARE) regular expression the whole value must match; anchor it with ^…$'),
    minLength: z.number().int().min(0).max(1_048_576).optional(),
    maxLength: z.number().int().min(1).max(1_048_576).optional(),
  })
  .strict()
  .refine(
    (f) => f.pattern !== undefined || f.minLength !== undefined || f.maxLength !== undefined,
    'name at least one rule',
  )
  .refine((f) => f.minLength === undefined || f.maxLength === undefined || f.minLength <= f.maxLength, {
    message: 'minLength must not exceed maxLength',
    path: ['minLength'],
  })
  .meta({ id: 'CustomFormat' });
export type CustomFormat = z.infer<typeof CustomFormat>;

export const SecretFormat = z.union([BuiltinFormat, CustomFormat]).meta({ id: 'SecretFormat' });
export type SecretFormat = z.infer<typeof SecretFormat>;

/**
 * A secret value: text, at most the server's configured size (64 KiB by default, checked in bytes by the server),
 * with no NUL character and no unpaired surrogate (neither survives storage as UTF-8 text unchanged).
 */
export const SecretValue = storableText(z.string().max(1_048_576));

const Description = storableText(z.string().max(1000));

export const Tag = z.string().regex(/^[A-Za-z0-9_.:/=@+-]{1,64}$/, 'must be 1-64 letters, digits or _ . : / = @ + -');

export const GeneratorCharset = z
  .enum(['alphanumeric', 'hex', 'base64url', 'ascii-printable'])
  .meta({ id: 'GeneratorCharset' });

const generatorShape = {
  length: z.number().int().min(8).max(4096),
  charset: GeneratorCharset,
  prefix: z
    .string()
    .max(64)
    .regex(/^[\x21-\x7e]*$/, 'must be printable ASCII without spaces')
    .optional(),
};

/** How Coffer makes a new value itself, from a cryptographic random source. */
export const Generator = z.object(generatorShape).meta({ id: 'Generator' });
export type Generator = z.infer<typeof Generator>;

const rotationShape = <G extends z.ZodType>(generator: G) => ({
  intervalDays: z.number().int().min(1).max(3650),
  generator: generator.optional().describe('Set it and the scheduler rotates the secret itself when due'),
  graceHours: z.number().int().min(0).max(8760).default(24).describe('How long the previous version stays readable'),
});

/** As the server answers it: lenient, so an older client still reads a policy that gained a field. */
export const RotationPolicy = z.object(rotationShape(Generator)).meta({ id: 'RotationPolicy' });
export type RotationPolicy = z.infer<typeof RotationPolicy>;

/** As a client writes it: a misspelt field (`intervalDay`) is refused, never dropped. */
export const RotationPolicyRequest = z.strictObject(rotationShape(z.strictObject(generatorShape)));

/**
 * What a secret is, for deployments: `infrastructure` (databases, payment keys, cloud credentials: never shipped to a
 * machine the team does not run), `service` (what a deployment shares only with itself: session keys, internal
 * tokens; made fresh for each deployment) or `user` (the user's own keys: asked for, never shipped).
 */
export const SECRET_CLASSES = ['infrastructure', 'service', 'user'] as const;
export const SecretClass = z.enum(SECRET_CLASSES).meta({ id: 'SecretClass' });
export type SecretClass = z.infer<typeof SecretClass>;

/** The tiers every tenant has a default for (see TIER_RULES); a strategy may name others. */
export const BUILTIN_TIERS = ['local', 'desktop', 'cloud'] as const;

/** Where a deployment goes: `local`, `desktop`, `cloud`, or a tier a secret's strategy names. */
export const Tier = z
  .string()
  .regex(/^[a-z][a-z0-9-]{0,31}$/, 'must be 1-32 lower-case letters, digits or - starting with a letter')
  .meta({ id: 'Tier' });
export type Tier = z.infer<typeof Tier>;

/** What a deployment does with a secret: never ship it, generate a fresh value, ask a person for it, or inject it. */
export const PLAN_ACTIONS = ['strip', 'generate', 'prompt', 'inject'] as const;
export const PlanAction = z.enum(PLAN_ACTIONS).meta({ id: 'PlanAction' });
export type PlanAction = z.infer<typeof PlanAction>;

const promptShape = {
  label: storableText(z.string().trim().min(1).max(200)).describe(
    'What the person is asked for, e.g. "Your OpenAI API key"',
  ),
  help: storableText(z.string().max(1000)).optional().describe('Where to find it, what it is for'),
  format: SecretFormat.optional().describe("The rule the value must satisfy; default the secret's own format"),
};

/** How a person is asked for a value (`prompt`): the label, help text and the format it must satisfy. */
export const PromptSpec = z.object(promptShape).meta({ id: 'PromptSpec' });
export type PromptSpec = z.infer<typeof PromptSpec>;

const tierStrategyShape = <G extends z.ZodType, P extends z.ZodType>(generator: G, prompt: P) => ({
  action: PlanAction,
  generator: generator
    .optional()
    .describe("generate: how to make the value; default the rotation policy's generator, else 43 base64url characters"),
  prompt: prompt.optional().describe("prompt: what to ask; default the secret's name and format"),
});

/** One tier's strategy for a secret, as the server answers it. */
export const TierStrategy = z.object(tierStrategyShape(Generator, PromptSpec)).meta({ id: 'TierStrategy' });
export type TierStrategy = z.infer<typeof TierStrategy>;

const TierStrategyRequest = z
  .strictObject(tierStrategyShape(z.strictObject(generatorShape), z.strictObject(promptShape)))
  .refine((s) => s.generator === undefined || s.action === 'generate', {
    message: 'a generator belongs to the generate action',
    path: ['generator'],
  })
  .refine((s) => s.prompt === undefined || s.action === 'prompt', {
    message: 'a prompt belongs to the prompt action',
    path: ['prompt'],
  });

/** Per tier, what a deployment does with the secret; a tier it does not name follows the class (TIER_RULES). */
export const Strategy = z.record(Tier, TierStrategy).meta({ id: 'Strategy' });
export type Strategy = z.infer<typeof Strategy>;

export const StrategyRequest = z
  .record(Tier, TierStrategyRequest)
  .refine((s) => Object.keys(s).length <= 16, 'at most 16 tiers')
  .meta({ id: 'StrategyRequest' });

/** A team name, as the inventory groups owners: free text. */
const OwnerTeam = storableText(z.string().trim().min(1).max(128));
/** How to reach the owner: an address, a channel, a URL. */
const Contact = storableText(z.string().trim().min(1).max(256));

/** Fields of a secret's deployment metadata, as PUT and PATCH take them (null clears one). */
const deploymentMetadataRequest = {
  class: SecretClass.nullable().optional(),
  strategy: StrategyRequest.nullable().optional(),
  ownerTeam: OwnerTeam.nullable().optional(),
  contact: Contact.nullable().optional(),
};

export const PutSecretRequest = z
  .strictObject({
    value: SecretValue,
    ifVersion: z
      .number()
      .int()
      .min(0)
      .max(INT4_MAX)
      .optional()
      .describe('Compare-and-set: 0 = must not exist yet; n = the current version must be n'),
    description: Description.nullable().optional(),
    tags: z.array(Tag).max(50).optional(),
    format: SecretFormat.nullable().optional(),
    expiresAt: Timestamp.nullable().optional(),
    rotation: RotationPolicyRequest.nullable().optional(),
    ...deploymentMetadataRequest,
  })
  .meta({ id: 'PutSecretRequest' });

/** Metadata only: never a new version. */
export const PatchSecretRequest = z
  .strictObject({
    description: Description.nullable().optional(),
    tags: z.array(Tag).max(50).optional(),
    format: SecretFormat.nullable().optional(),
    expiresAt: Timestamp.nullable().optional(),
    rotation: RotationPolicyRequest.nullable().optional(),
    ...deploymentMetadataRequest,
  })
  .refine((v) => Object.values(v).some((x) => x !== undefined), 'must change at least one field')
  .meta({ id: 'PatchSecretRequest' });
export type PatchSecretRequest = z.infer<typeof PatchSecretRequest>;

export const RotateSecretRequest = z
  .strictObject({
    value: SecretValue.optional().describe("The new value; omit to let the secret's generator make one"),
    notes: storableText(z.string().max(500)).optional().describe('Why, for the rotation log (never a value)'),
  })
  .meta({ id: 'RotateSecretRequest' });
export type RotateSecretRequest = z.infer<typeof RotateSecretRequest>;
export type PutSecretRequest = z.infer<typeof PutSecretRequest>;

export const SecretMetadata = z
  .object({
    kind: SecretKind,
    owner: z.string(),
    name: z.string(),
    version: z.number().int().describe('The current version'),
    description: z.string().nullable(),
    tags: z.array(z.string()),
    format: SecretFormat.nullable(),
    createdAt: Timestamp,
    updatedAt: Timestamp,
    expiresAt: Timestamp.nullable(),
    createdBy: Uuid.nullable().describe('Identity that created the secret'),
    rotation: RotationPolicy.nullable(),
    lastRotatedAt: Timestamp.nullable(),
    nextRotationAt: Timestamp.nullable(),
    class: SecretClass.nullable().describe('infrastructure, service or user: what deployments do with it by default'),
    strategy: Strategy.nullable().describe('Per tier, what a deployment does with it (overrides the class)'),
    ownerTeam: z.string().nullable().describe('The team that owns the secret (the inventory)'),
    contact: z.string().nullable().describe('How to reach the owner'),
  })
  .meta({ id: 'SecretMetadata' });
export type SecretMetadata = z.infer<typeof SecretMetadata>;

export const SecretWithValue = SecretMetadata.extend({
  version: z.number().int().describe('The version whose value this is'),
  value: z.string(),
}).meta({ id: 'SecretWithValue' });
export type SecretWithValue = z.infer<typeof SecretWithValue>;

const env = EnvironmentSlug.optional().describe('The environment; the tenant’s `default` when absent');

export const GetSecretQuery = z.strictObject({
  env,
  version: z
    .union([z.literal('previous'), z.coerce.number().int().min(1).max(INT4_MAX)])
    .optional()
    .describe('An older version number, or `previous`; default the current one'),
});

export const VersionState = z.enum(['current', 'previous', 'old', 'destroyed']);
export const SecretVersionInfo = z
  .object({
    version: z.number().int(),
    createdAt: Timestamp,
    createdBy: Uuid.nullable(),
    createdByName: z
      .string()
      .nullable()
      .describe('The name that identity has now; null when it was deleted, or no identity wrote it (the scheduler)'),
    state: VersionState,
    destroyedAt: Timestamp.nullable(),
    servedUntil: Timestamp.nullable().describe('Set when a rotation superseded it: readable until then, 410 after'),
    revokedAt: Timestamp.nullable().describe('Revoked: answers 410 from then on'),
    deployment: Uuid.nullable().describe('The deployment this version was generated for'),
  })
  .meta({ id: 'SecretVersionInfo' });
export type SecretVersionInfo = z.infer<typeof SecretVersionInfo>;

export const SecretVersions = z.object({ items: z.array(SecretVersionInfo) }).meta({ id: 'SecretVersions' });
export type SecretVersions = z.infer<typeof SecretVersions>;

export const ListSecretsQuery = z.strictObject({
  env,
  kind: SecretKind.optional(),
  owner: SecretOwner.optional(),
  prefix: z
    .string()
    .max(128)
    .regex(/^[A-Za-z0-9_.-]*$/, 'must be the start of a secret name')
    .optional()
    .describe('Only names starting with this'),
  deleted: z
    .enum(['true', 'false'])
    .transform((v) => v === 'true')
    .optional()
    .describe('List soft-deleted secrets (still restorable) instead of live ones'),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  cursor: Cursor.optional(),
});

export const SecretPage = z
  .object({ items: z.array(SecretMetadata), nextCursor: Cursor.nullable() })
  .meta({ id: 'SecretPage' });
export type SecretPage = z.infer<typeof SecretPage>;

export const DeleteSecretQuery = z.strictObject({
  env,
  purge: z
    .enum(['true', 'false'])
    .transform((v) => v === 'true')
    .optional()
    .describe('Erase for good now instead of a recoverable soft delete'),
});

export const DestroyVersionParams = SecretPathParams.extend({ version: z.coerce.number().int().min(1).max(INT4_MAX) });

export const Bundle = z
  .object({
    values: z.record(z.string(), z.string()),
    versions: z.record(z.string(), z.number().int()),
  })
  .meta({ id: 'Bundle' });
export type Bundle = z.infer<typeof Bundle>;

export const BundleWriteRequest = z
  .strictObject({
    set: z
      .record(
        SecretName,
        z.strictObject({
          value: SecretValue,
          ifVersion: z.number().int().min(0).max(INT4_MAX).optional(),
          format: SecretFormat.nullable().optional(),
        }),
      )
      .optional(),
    delete: z.array(SecretName).max(1000).optional(),
  })
  .refine((b) => Object.keys(b.set ?? {}).length + (b.delete?.length ?? 0) > 0, 'set or delete at least one secret')
  .refine((b) => Object.keys(b.set ?? {}).length + (b.delete?.length ?? 0) <= 1000, 'at most 1000 secrets at once')
  .refine(
    (b) => !(b.delete ?? []).some((n) => b.set !== undefined && Object.hasOwn(b.set, n)),
    'a name cannot be both set and deleted',
  )
  .meta({ id: 'BundleWriteRequest' });
export type BundleWriteRequest = z.infer<typeof BundleWriteRequest>;

export const BundleWriteResponse = z
  .object({
    versions: z.record(z.string(), z.number().int().nullable()).describe('New version of each name; null if deleted'),
  })
  .meta({ id: 'BundleWriteResponse' });
export type BundleWriteResponse = z.infer<typeof BundleWriteResponse>;

/** `kind/owner/name`, one regex built from the parts' own patterns so the path refuses exactly what they refuse. */
export const SecretPathString = z
  .string()
  .regex(
    new RegExp(
      `^(?:${SECRET_KINDS.join('|')})/${SECRET_OWNER_PATTERN.source.slice(1, -1)}/${SECRET_NAME_PATTERN.source.slice(1, -1)}$`,
    ),
    'must be a secret path kind/owner/name, e.g. sandbox/sbx-42/DB_URL',
  )
  .refine((p) => !p.endsWith('/__proto__'), 'is reserved: __proto__ cannot travel as a bundle key')
  .describe('kind/owner/name');

/** The most entries one check run takes: a deployment manifest, not a tenant-wide scan. */
export const CHECK_MAX_ENTRIES = 500;

export const CheckEntry = z
  .object({
    path: SecretPathString,
    required: z.boolean().default(true).describe('A missing or deleted secret fails the run only when required'),
    format: SecretFormat.optional().describe("The format the value must satisfy; default the secret's stored format"),
    maxAgeDays: z.number().positive().optional().describe('The current version must be younger than this'),
  })
  .strict()
  .meta({ id: 'CheckEntry' });
export type CheckEntry = z.infer<typeof CheckEntry>;

export const CheckRequest = z
  .object({
    secrets: z
      .array(CheckEntry)
      .min(1)
      .max(CHECK_MAX_ENTRIES)
      .refine((xs) => new Set(xs.map((x) => x.path)).size === xs.length, 'a path is listed twice'),
  })
  .strict()
  .meta({ id: 'CheckRequest' });
export type CheckRequest = z.infer<typeof CheckRequest>;

/**
 * One verdict per secret. `denied` (no `list` capability on the path) says nothing about whether the secret exists;
 * `deleted` is soft-deleted and restorable; `overdue` is a rotation due or a current version older than maxAgeDays.
 */
export const CHECK_STATUSES = ['ok', 'missing', 'deleted', 'expired', 'malformed', 'overdue', 'denied'] as const;
export const CheckStatus = z.enum(CHECK_STATUSES).meta({ id: 'CheckStatus' });
export type CheckStatus = z.infer<typeof CheckStatus>;

export const CheckResult = z
  .object({
    path: z.string(),
    status: CheckStatus,
    required: z.boolean(),
    /** Whether this entry lets the run pass: `ok`, or `missing`/`deleted` when not required. */
    passed: z.boolean(),
    version: z.number().int().nullable().describe('The current version; null when denied or missing'),
    message: z.string().describe('Why, in words (for malformed: the rule that failed); never the value'),
  })
  .strict()
  .meta({ id: 'CheckResult' });
export type CheckResult = z.infer<typeof CheckResult>;

export const CheckResponse = z
  .object({
    ok: z.boolean().describe('Every entry passed'),
    counts: z.record(CheckStatus, z.number().int()),
    results: z.array(CheckResult),
  })
  .strict()
  .meta({ id: 'CheckResponse' });
export type CheckResponse = z.infer<typeof CheckResponse>;
