import { readFileSync } from 'node:fs';
import { EnvironmentSlug, SecretFormat } from '@coffer/contracts';
import { parseSecretPath } from '@coffer/sdk';
import YAML from 'yaml';
import { z } from 'zod';
import { readEnv } from './config.ts';
import { checkEnvironment } from './context.ts';
import { usageError } from './output.ts';

export const SECRET_CLASSES = ['infrastructure', 'service', 'user'] as const;
export const TIERS = ['local', 'desktop', 'cloud'] as const;
export const PLAN_ACTIONS = ['strip', 'generate', 'prompt', 'inject'] as const;
export type SecretClass = (typeof SECRET_CLASSES)[number];
export type Tier = (typeof TIERS)[number];
export type PlanAction = (typeof PLAN_ACTIONS)[number];

const SecretPathString = z.string().refine((p) => {
  try {
    parseSecretPath(p);
    return true;
  } catch {
    return false;
  }
}, 'must be a secret path kind/owner/name, e.g. sandbox/sbx-42/DB_URL');

/**
 * What a deployment needs (JSON or YAML). `coffer check` verifies each secret exists, is live, unexpired, matches
 * its format and is younger than `maxAgeDays`; `coffer plan` says what each tier does with it, from its `class`.
 */
export const ManifestSecret = z
  .object({
    path: SecretPathString,
    /** A built-in format name or {pattern, minLength, maxLength}; defaults to the format stored with the secret. */
    format: SecretFormat.optional(),
    /** The current version must be younger than this many days (fractions allowed). */
    maxAgeDays: z.number().positive().optional(),
    /** A secret that may be absent (missing or deleted) without failing `coffer check`; default true. */
    required: z.boolean().optional(),
    class: z.enum(SECRET_CLASSES).optional(),
    /** Per-tier overrides of what `plan` does with this secret. */
    tiers: z.partialRecord(z.enum(TIERS), z.enum(PLAN_ACTIONS)).optional(),
    description: z.string().optional(),
  })
  .strict();
export type ManifestSecret = z.infer<typeof ManifestSecret>;

export const Manifest = z
  .object({
    version: z.literal(1).optional(),
    /**
     * The environment each tier's secrets live in (`cloud: production`): `coffer check --tier cloud` checks there
     * and `coffer plan --tier cloud` says so. A tier not named here uses the tenant's default environment.
     */
    environments: z.partialRecord(z.enum(TIERS), EnvironmentSlug).optional(),
    secrets: z.array(ManifestSecret).min(1, 'must list at least one secret'),
  })
  .strict()
  .superRefine((m, ctx) => {
    const seen = new Set<string>();
    m.secrets.forEach((s, i) => {
      if (seen.has(s.path))
        ctx.addIssue({ code: 'custom', path: ['secrets', i, 'path'], message: `${s.path} is listed twice` });
      seen.add(s.path);
    });
  });
export type Manifest = z.infer<typeof Manifest>;

export function loadManifest(file: string): Manifest {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw usageError(`cannot read the manifest ${file} (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  let data: unknown;
  try {
    data = /\.json$/i.test(file) ? JSON.parse(text) : YAML.parse(text);
  } catch (e) {
    throw usageError(
      `the manifest ${file} is not valid ${/\.json$/i.test(file) ? 'JSON' : 'YAML'}: ${(e as Error).message.split('\n')[0]}`,
    );
  }
  const parsed = Manifest.safeParse(data);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(top)'}: ${i.message}`);
    throw usageError(`the manifest ${file} is invalid:\n  ${problems.join('\n  ')}`);
  }
  return parsed.data;
}

/**
 * What each tier does with each class of secret, unless a secret's `tiers` says otherwise:
 * - infrastructure (databases, payment keys, cloud credentials): never shipped to a machine we do not run, so
 *   stripped from local and desktop builds; injected from Coffer in the cloud.
 * - service (secrets a deployment shares only with itself: session keys, internal tokens): regenerated per
 *   deployment on local and desktop; injected from Coffer (where rotation keeps them) in the cloud.
 * - user (the user's own keys): prompted for at run time everywhere; Coffer never ships them.
 */
export const TIER_RULES: Record<SecretClass, Record<Tier, PlanAction>> = {
  infrastructure: { local: 'strip', desktop: 'strip', cloud: 'inject' },
  service: { local: 'generate', desktop: 'generate', cloud: 'inject' },
  user: { local: 'prompt', desktop: 'prompt', cloud: 'prompt' },
};

export const ACTION_MEANING: Record<PlanAction, string> = {
  strip: 'never shipped to this tier',
  generate: 'regenerated for each deployment',
  prompt: 'supplied by the user at run time',
  inject: 'injected from Coffer at start (coffer run)',
};

export interface ResolvedEnvironment {
  /** The slug, or undefined for the tenant's default environment. */
  slug: string | undefined;
  /** Where it came from, for the line that says where a check ran. */
  source: string;
  /** A warning when COFFER_ENV overrides what the manifest says for the tier. */
  warning?: string;
}

/**
 * The environment of a check or plan, by the CLI's usual precedence: --env, then COFFER_ENV, then the manifest's
 * environment for --tier, then the tenant's default.
 */
export function environmentFor(
  manifest: Manifest,
  flag: string | undefined,
  tier: Tier | undefined,
): ResolvedEnvironment {
  const mapped = tier !== undefined ? manifest.environments?.[tier] : undefined;
  if (flag !== undefined) return { slug: checkEnvironment(flag, '--env'), source: '--env' };
  const fromEnv = readEnv().environment;
  if (fromEnv !== undefined) {
    const slug = checkEnvironment(fromEnv, 'COFFER_ENV');
    return {
      slug,
      source: 'COFFER_ENV',
      ...(mapped !== undefined && mapped !== slug
        ? { warning: `COFFER_ENV=${slug} overrides the manifest's ${mapped} for ${tier}; unset it or pass --env` }
        : {}),
    };
  }
  if (mapped !== undefined) return { slug: mapped, source: `the manifest's environment for ${tier}` };
  return { slug: undefined, source: 'the tenant default' };
}

export function tierArg(raw: string): Tier {
  if ((TIERS as readonly string[]).includes(raw)) return raw as Tier;
  throw usageError(`--tier must be one of ${TIERS.join(', ')}, not "${raw}"`);
}
