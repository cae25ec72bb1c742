import { z } from 'zod';
import { Cursor, storableText, Timestamp, Uuid } from './common.ts';
import { EnvironmentSlug } from './environment-slug.ts';
import { CreateIntakeResponse } from './intake.ts';
import { SECRET_KINDS, SECRET_NAME_PATTERN, SECRET_OWNER_PATTERN } from './patterns.ts';
import {
  BUILTIN_TIERS,
  PlanAction,
  PromptSpec,
  SecretClass,
  type Strategy,
  Tier,
  type TierStrategy,
} from './secrets.ts';

/**
 * What each built-in tier does with each class of secret, unless a secret's strategy names the tier:
 * - infrastructure (databases, payment keys, cloud credentials): never shipped to a machine the team does not run,
 *   so stripped from local and desktop deployments; injected from Coffer in the cloud.
 * - service (what a deployment shares only with itself: session keys, internal tokens): generated fresh for each
 *   local and desktop deployment; injected from Coffer (where rotation keeps it) in the cloud.
 * - user (the user's own keys): asked for everywhere; Coffer never ships them.
 */
export const TIER_RULES: Record<SecretClass, Record<(typeof BUILTIN_TIERS)[number], PlanAction>> = {
  infrastructure: { local: 'strip', desktop: 'strip', cloud: 'inject' },
  service: { local: 'generate', desktop: 'generate', cloud: 'inject' },
  user: { local: 'prompt', desktop: 'prompt', cloud: 'prompt' },
};

/** A tier a strategy names but that is not built in: what a secret whose strategy does not name it gets (fail closed). */
export const OTHER_TIER_RULES: Record<SecretClass, PlanAction> = {
  infrastructure: 'strip',
  service: 'generate',
  user: 'prompt',
};

export const ACTION_MEANING: Record<PlanAction, string> = {
  strip: 'never shipped to this tier',
  generate: 'regenerated for each deployment',
  prompt: 'supplied by the user at run time',
  inject: 'injected from Coffer at start (coffer run)',
};

export interface PlannedAction {
  action: PlanAction;
  /** Why, in words a person reads in the plan. */
  reason: string;
  /** The strategy entry that decided it, when one did. */
  strategy: TierStrategy | null;
}

const isBuiltinTier = (tier: string): tier is (typeof BUILTIN_TIERS)[number] =>
  (BUILTIN_TIERS as readonly string[]).includes(tier);

/** The strategy's entry for a tier: an own key only (a tier named `constructor` is a key, never a prototype's). */
export function strategyFor(strategy: Strategy | null | undefined, tier: string): TierStrategy | null {
  return strategy && Object.hasOwn(strategy, tier) ? (strategy[tier] ?? null) : null;
}

/**
 * The one rule for what a deployment of `tier` does with a secret: its strategy for the tier, else its class's rule
 * for the tier, else (no class) inject. The server plans deployments with it and `coffer plan` shows it.
 */
export function planActionFor(
  secret: { class: SecretClass | null; strategy: Strategy | null },
  tier: string,
): PlannedAction {
  const own = strategyFor(secret.strategy, tier);
  if (own) {
    return {
      action: own.action,
      reason: `${ACTION_MEANING[own.action]} (set for ${tier} on the secret)`,
      strategy: own,
    };
  }
  if (!secret.class) return { action: 'inject', reason: `${ACTION_MEANING.inject} (no class)`, strategy: null };
  const action = isBuiltinTier(tier) ? TIER_RULES[secret.class][tier] : OTHER_TIER_RULES[secret.class];
  return { action, reason: `${ACTION_MEANING[action]} (${secret.class} secret)`, strategy: null };
}

/** Whether some secret of a deployment knows the tier: a built-in one, or one a strategy names. */
export function tierKnown(tier: string, secrets: readonly { strategy: Strategy | null }[]): boolean {
  return isBuiltinTier(tier) || secrets.some((s) => strategyFor(s.strategy, tier) !== null);
}

const BUNDLE_REF = new RegExp(`^(${SECRET_KINDS.join('|')})/${SECRET_OWNER_PATTERN.source.slice(1, -1)}$`);
const SECRET_REF = new RegExp(
  `^(${SECRET_KINDS.join('|')})/${SECRET_OWNER_PATTERN.source.slice(1, -1)}/${SECRET_NAME_PATTERN.source.slice(1, -1)}$`,
);

/** One owner's secrets, as `kind/owner`: `sandbox/sbx-42`. */
export const BundleRef = z.string().regex(BUNDLE_REF, 'must be a bundle kind/owner, e.g. sandbox/sbx-42');
/** One secret, as `kind/owner/name`. */
export const SecretRef = z
  .string()
  .regex(SECRET_REF, 'must be a secret path kind/owner/name, e.g. sandbox/sbx-42/DB_URL');

const planShape = {
  environment: EnvironmentSlug,
  tier: Tier,
  bundles: z
    .array(BundleRef)
    .min(1)
    .max(20)
    .refine((b) => new Set(b).size === b.length, 'name each bundle once')
    .describe('The bundles (kind/owner) the deployment is made of, in order'),
};

/** A dry run: what `POST /v1/deployments` would do with these bundles, changing nothing. */
export const PlanDeploymentRequest = z.strictObject(planShape).meta({ id: 'PlanDeploymentRequest' });
export type PlanDeploymentRequest = z.infer<typeof PlanDeploymentRequest>;

export const CreateDeploymentRequest = z
  .strictObject({ name: storableText(z.string().trim().min(1).max(200)), ...planShape })
  .meta({ id: 'CreateDeploymentRequest' });
export type CreateDeploymentRequest = z.infer<typeof CreateDeploymentRequest>;

export const DeploymentPlanItem = z
  .object({
    path: z.string().describe('kind/owner/name'),
    action: PlanAction,
    reason: z.string(),
    class: SecretClass.nullable(),
    version: z
      .number()
      .int()
      .nullable()
      .describe(
        'generate: the version made for this deployment; inject: the current version when it was planned; else null',
      ),
    prompt: PromptSpec.optional().describe('prompt: what the person is asked for'),
    intake: CreateIntakeResponse.optional().describe(
      'prompt, only in the answer that made the deployment: the one-time intake link where the person supplies the ' +
        'value (shown once; only its hash is kept). Absent from plans and from a stored deployment, and where the ' +
        'identity may not make links for the secret',
    ),
  })
  .meta({ id: 'DeploymentPlanItem' });
export type DeploymentPlanItem = z.infer<typeof DeploymentPlanItem>;

export const DeploymentPlan = z
  .object({
    environment: z.string(),
    tier: z.string(),
    bundles: z.array(z.string()),
    plan: z.array(DeploymentPlanItem),
  })
  .meta({ id: 'DeploymentPlan' });
export type DeploymentPlan = z.infer<typeof DeploymentPlan>;

export const Actor = z.object({ id: Uuid.nullable(), name: z.string().nullable() }).meta({ id: 'Actor' });
export type Actor = z.infer<typeof Actor>;

const ActionCounts = z.object({
  strip: z.number().int(),
  generate: z.number().int(),
  prompt: z.number().int(),
  inject: z.number().int(),
});

export const DeploymentSummary = z
  .object({
    id: Uuid,
    name: z.string(),
    environment: z.string(),
    tier: z.string(),
    bundles: z.array(z.string()),
    createdAt: Timestamp,
    createdBy: Actor,
    revokedAt: Timestamp.nullable(),
    counts: ActionCounts.describe('Secrets of the plan by action'),
  })
  .meta({ id: 'DeploymentSummary' });
export type DeploymentSummary = z.infer<typeof DeploymentSummary>;

export const CreatedDeployment = DeploymentSummary.extend({
  plan: z.array(DeploymentPlanItem),
  generated: z
    .record(z.string(), z.string())
    .describe('The values generated for this deployment, by name: shown once, here, and never again'),
}).meta({ id: 'CreatedDeployment' });
export type CreatedDeployment = z.infer<typeof CreatedDeployment>;

/** One version of one secret a deployment received, by one identity: at creation (generated) or by a run. */
export const DeploymentReceipt = z
  .object({
    path: z.string(),
    version: z.number().int(),
    action: PlanAction,
    via: z
      .enum(['created', 'run'])
      .describe('created: handed out when the deployment was made; run: read by coffer run'),
    by: Actor,
    firstAt: Timestamp,
    lastAt: Timestamp,
    reads: z.number().int(),
  })
  .meta({ id: 'DeploymentReceipt' });
export type DeploymentReceipt = z.infer<typeof DeploymentReceipt>;

export const DeploymentRevocation = z
  .object({
    revokedAt: Timestamp,
    revokedBy: Actor,
    notes: z.string().nullable(),
    rotated: z
      .array(z.object({ path: z.string(), fromVersion: z.number().int(), toVersion: z.number().int() }))
      .describe('Secrets whose current value was generated for the deployment, rotated to a new one'),
    revokedVersions: z
      .array(z.object({ path: z.string(), version: z.number().int() }))
      .describe('The versions generated for the deployment, revoked (410 from then on)'),
    leasesRevoked: z.number().int().describe('Dynamic credentials leased to the deployment, revoked'),
  })
  .meta({ id: 'DeploymentRevocation' });
export type DeploymentRevocation = z.infer<typeof DeploymentRevocation>;

export const Deployment = DeploymentSummary.extend({
  plan: z.array(DeploymentPlanItem),
  received: z.array(DeploymentReceipt).describe('What the deployment received: path@version, when and by whom'),
  revocation: DeploymentRevocation.nullable(),
}).meta({ id: 'Deployment' });
export type Deployment = z.infer<typeof Deployment>;

export const DeploymentPage = z
  .object({ items: z.array(DeploymentSummary), nextCursor: Cursor.nullable() })
  .meta({ id: 'DeploymentPage' });
export type DeploymentPage = z.infer<typeof DeploymentPage>;

export const ListDeploymentsQuery = z.strictObject({
  env: EnvironmentSlug.optional().describe('Only deployments to this environment; default every environment'),
  secret: SecretRef.optional().describe('Only deployments that received, or were planned to receive, this secret'),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  cursor: Cursor.optional(),
});

export const DeploymentParams = z.object({ id: Uuid });

export const RevokeDeploymentRequest = z
  .strictObject({ notes: storableText(z.string().max(500)).optional().describe('Why, for the rotation log') })
  .meta({ id: 'RevokeDeploymentRequest' });
export type RevokeDeploymentRequest = z.infer<typeof RevokeDeploymentRequest>;

export const RevokedDeployment = DeploymentRevocation.extend({ id: Uuid }).meta({ id: 'RevokedDeployment' });
export type RevokedDeployment = z.infer<typeof RevokedDeployment>;
