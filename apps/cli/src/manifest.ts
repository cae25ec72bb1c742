import { readFileSync } from 'node:fs';
import {
  BUILTIN_TIERS,
  EnvironmentSlug,
  type PlanAction,
  PlanAction as PlanActionSchema,
  type SecretClass,
  SecretClass as SecretClassSchema,
  SecretFormat,
  type Strategy,
  StrategyRequest,
  Tier as TierSchema,
} from '@coffer/contracts';
import { parseSecretPath } from '@coffer/sdk';
import YAML from 'yaml';
import { z } from 'zod';
import { readEnv } from './config.ts';
import { checkEnvironment } from './context.ts';
import { usageError } from './output.ts';

export { ACTION_MEANING, PLAN_ACTIONS, SECRET_CLASSES, TIER_RULES } from '@coffer/contracts';
export const TIERS = BUILTIN_TIERS;
export type Tier = string;
export type { PlanAction, SecretClass };

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
 * its format and is younger than `maxAgeDays`; `coffer plan` says what each tier does with it, from its `class`
 * and `strategy`; `coffer manifest push` stores class, strategy, owner team, contact and description on the server,
 * and `pull` writes the server's back.
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
    class: SecretClassSchema.optional(),
    /** Per tier, only the action: shorthand for a strategy entry without a generator or prompt. */
    tiers: z.record(TierSchema, PlanActionSchema).optional(),
    /** Per tier, the action with its generator (generate) or prompt (prompt), as the server stores it. */
    strategy: StrategyRequest.optional(),
    ownerTeam: z.string().min(1).max(128).optional(),
    contact: z.string().min(1).max(256).optional(),
    description: z.string().optional(),
  })
  .strict()
  .superRefine((s, ctx) => {
    for (const tier of Object.keys(s.tiers ?? {})) {
      if (s.strategy && Object.hasOwn(s.strategy, tier)) {
        ctx.addIssue({ code: 'custom', path: ['tiers', tier], message: `strategy.${tier} says it too: keep one` });
      }
    }
  });
export type ManifestSecret = z.infer<typeof ManifestSecret>;

/** A manifest secret's strategy: `tiers` (actions only) and `strategy` together; null when it names no tier. */
export function strategyOfManifest(s: Pick<ManifestSecret, 'tiers' | 'strategy'>): Strategy | null {
  const out: Strategy = {};
  for (const [tier, action] of Object.entries(s.tiers ?? {})) out[tier] = { action };
  for (const [tier, entry] of Object.entries(s.strategy ?? {})) out[tier] = entry;
  return Object.keys(out).length > 0 ? out : null;
}

export const Manifest = z
  .object({
    version: z.literal(1).optional(),
    /**
     * The environment each tier's secrets live in (`cloud: production`): `coffer check --tier cloud` checks there
     * and `coffer plan --tier cloud` says so. A tier not named here uses the tenant's default environment.
     */
    environments: z.record(TierSchema, EnvironmentSlug).optional(),
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

/** A tier: a built-in one, or one a strategy names (whether the manifest or server knows it is decided later). */
export function tierArg(raw: string): Tier {
  if (TierSchema.safeParse(raw).success) return raw;
  throw usageError(`--tier must be a tier (${TIERS.join(', ')}, or one a strategy names), not "${raw}"`);
}
