import { z } from 'zod';
import { INT4_MAX, storableText, Timestamp } from './common.ts';
import { EnvironmentSlug } from './environment-slug.ts';
import { SecretKind, SecretName, SecretOwner } from './secrets.ts';

export const Environment = z
  .object({
    slug: EnvironmentSlug,
    name: z.string(),
    protected: z.boolean().describe('Writes only by promotion or from admins'),
    default: z.boolean().describe('Where requests without ?env go; never deleted'),
    createdAt: Timestamp,
    updatedAt: Timestamp,
  })
  .meta({ id: 'Environment' });
export type Environment = z.infer<typeof Environment>;

export const EnvironmentList = z.object({ items: z.array(Environment) }).meta({ id: 'EnvironmentList' });
export type EnvironmentList = z.infer<typeof EnvironmentList>;

const EnvironmentName = storableText(z.string().trim().min(1).max(128));

export const CreateEnvironmentRequest = z
  .strictObject({ slug: EnvironmentSlug, name: EnvironmentName, protected: z.boolean().optional() })
  .meta({ id: 'CreateEnvironmentRequest' });
export type CreateEnvironmentRequest = z.infer<typeof CreateEnvironmentRequest>;

export const UpdateEnvironmentRequest = z
  .strictObject({ name: EnvironmentName.optional(), protected: z.boolean().optional() })
  .refine((b) => b.name !== undefined || b.protected !== undefined, 'change name or protected')
  .meta({ id: 'UpdateEnvironmentRequest' });
export type UpdateEnvironmentRequest = z.infer<typeof UpdateEnvironmentRequest>;

export const EnvironmentParams = z.object({ slug: EnvironmentSlug });

export const EnvironmentDiffQuery = z.strictObject({
  from: EnvironmentSlug,
  to: EnvironmentSlug,
  kind: SecretKind,
  owner: SecretOwner,
});

export const DiffState = z.enum(['same', 'different', 'only_in_from', 'only_in_to']).meta({ id: 'DiffState' });
export type DiffState = z.infer<typeof DiffState>;

export const EnvironmentDiffItem = z
  .object({
    name: z.string(),
    state: DiffState.describe('Compared by keyed fingerprints of the current values; never the values'),
    formatDiffers: z.boolean(),
    rotationDiffers: z.boolean().describe('The rotation policy (interval, grace, generator) differs'),
    fromVersion: z.number().int().nullable(),
    toVersion: z.number().int().nullable(),
  })
  .meta({ id: 'EnvironmentDiffItem' });
export type EnvironmentDiffItem = z.infer<typeof EnvironmentDiffItem>;

export const EnvironmentDiff = z
  .object({
    from: EnvironmentSlug,
    to: EnvironmentSlug,
    kind: SecretKind,
    owner: z.string(),
    items: z.array(EnvironmentDiffItem),
  })
  .meta({ id: 'EnvironmentDiff' });
export type EnvironmentDiff = z.infer<typeof EnvironmentDiff>;

export const PromoteRequest = z
  .strictObject({
    from: EnvironmentSlug,
    to: EnvironmentSlug,
    kind: SecretKind,
    owner: SecretOwner,
    names: z
      .array(SecretName)
      .min(1)
      .max(1000)
      .refine((n) => new Set(n).size === n.length, 'must not repeat a name')
      .optional()
      .describe('Only these names; default every live secret of the owner in `from`'),
    expect: z
      .record(SecretName, z.number().int().min(0).max(INT4_MAX))
      .optional()
      .describe('Compare-and-set: the current version each name must have in `to` (0: must not exist there)'),
  })
  .refine((b) => b.from !== b.to, { path: ['to'], message: 'must differ from from' })
  .meta({ id: 'PromoteRequest' });
export type PromoteRequest = z.infer<typeof PromoteRequest>;

export const PromotedSecret = z
  .object({
    name: z.string(),
    fromVersion: z.number().int(),
    toVersion: z.number().int().describe('The new version in `to`'),
    previousToVersion: z.number().int().nullable().describe('The version `to` had before; null if it was new'),
    changed: z.boolean().describe('False when `to` already held the same value: no new version was written'),
  })
  .meta({ id: 'PromotedSecret' });

export const PromoteResponse = z
  .object({ from: EnvironmentSlug, to: EnvironmentSlug, items: z.array(PromotedSecret) })
  .meta({ id: 'PromoteResponse' });
export type PromoteResponse = z.infer<typeof PromoteResponse>;
