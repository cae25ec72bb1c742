import { readFileSync } from 'node:fs';
import {
  BUILTIN_TIERS,
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
