import {
  ACTION_MEANING,
  BUILTIN_TIERS,
  type DeploymentPlan,
  type PlanAction,
  planActionFor,
  type SecretClass,
  TIER_RULES,
  tierKnown,
} from '@coffer/contracts';
import { parseOwnerPath } from '@coffer/sdk';
import type { Command } from 'commander';
import { connect } from '../context.ts';
import { environmentFor, loadManifest, strategyOfManifest, tierArg } from '../manifest.ts';
import { json, note, out, type Style, styleFor, table, usageError } from '../output.ts';
import { collect, envOption, examples, globalsOf } from './common.ts';

export interface PlanRow {
  path: string;
  class: SecretClass | null;
  action: PlanAction;
  why: string;
}

/** The offline plan: each manifest secret's strategy (tiers and strategy) for the tier, else its class's rule. */
export function planFor(secrets: ReturnType<typeof loadManifest>['secrets'], tier: string): PlanRow[] {
  const withStrategy = secrets.map((s) => ({ ...s, merged: strategyOfManifest(s) }));
  if (
    !tierKnown(
      tier,
      withStrategy.map((s) => ({ strategy: s.merged })),
    )
  ) {
    throw usageError(`--tier must be one of ${BUILTIN_TIERS.join(', ')} or a tier the manifest names, not "${tier}"`);
  }
  const unclassified = withStrategy
    .filter((s) => s.class === undefined && !(s.merged && Object.hasOwn(s.merged, tier)))
    .map((s) => s.path);
  if (unclassified.length > 0)
    throw usageError(`coffer plan needs a class (infrastructure, service or user) for: ${unclassified.join(', ')}`);
  return withStrategy.map((s) => {
    const decided = planActionFor({ class: s.class ?? null, strategy: s.merged }, tier);
    return {
      path: s.path,
      class: s.class ?? null,
      action: decided.action,
      why: decided.strategy
        ? `${ACTION_MEANING[decided.action]} (set for ${tier} in the manifest)`
        : ACTION_MEANING[decided.action],
    };
  });
}

export const paintAction = (s: Style, a: PlanAction) =>
  a === 'strip' ? s.red(a) : a === 'generate' ? s.green(a) : a === 'prompt' ? s.yellow(a) : a;

/** The server's plan for bundles (a dry run of `coffer deploy create`): what `coffer plan --bundle` and `deploy plan` print. */
export async function printServerPlan(
  cmd: Command,
  opts: { bundle: string[]; tier: string; env?: string; json?: boolean },
): Promise<DeploymentPlan> {
  const bundles = opts.bundle.map((b) => {
    const o = parseOwnerPath(b);
    return `${o.kind}/${o.owner}`;
  });
  const { client } = connect(globalsOf(cmd));
  const plan = await client.planDeployment({
    tier: opts.tier,
    bundles,
    ...(opts.env !== undefined ? { environment: opts.env } : {}),
  });
  if (opts.json) {
    json(plan);
    return plan;
  }
  const s = styleFor(process.stdout);
  out(
    table(
      plan.plan.map((i) => [
        i.path,
        i.class ?? '',
        paintAction(s, i.action),
        i.version === null ? '' : String(i.version),
        i.prompt ? `${i.reason}: "${i.prompt.label}"` : i.reason,
      ]),
      ['PATH', 'CLASS', 'ACTION', 'VERSION', 'WHY'].map(s.bold),
    ),
  );
  return plan;
}

export function registerPlan(program: Command): void {
  examples(
    program
      .command('plan')
      .summary('What a deployment tier does with each secret')
      .argument('[manifest]', 'a manifest (.json, .yaml or .yml) whose secrets each have a class (offline)')
      .description(
        'What a deployment tier does with each secret: strip (never shipped), generate (new for each deployment), ' +
          'prompt (the user supplies it) or inject (from Coffer). With a manifest: from its classes and strategies ' +
          "only (no server, no credentials); injected secrets come from the environment the manifest's " +
          '`environments` maps the tier to (--env or COFFER_ENV win), as coffer run --env does. With --bundle: the ' +
          "server's strategy for the bundles' secrets, exactly as a deployment would plan them (coffer deploy plan).",
      )
      .requiredOption('--tier <tier>', `${BUILTIN_TIERS.join(' | ')}, or a tier a strategy names`, tierArg)
      .option('--bundle <kind/owner>', "plan these bundles from the server's strategy (repeat it)", collect)
      .addOption(envOption())
      .option('--json', 'print the plan as JSON')
      .addHelpText(
        'after',
        `\nDefaults by class (a secret's strategy for a tier overrides them):\n${table(
          (Object.keys(TIER_RULES) as SecretClass[]).map((c) => [c, ...BUILTIN_TIERS.map((t) => TIER_RULES[c][t])]),
          ['CLASS', ...BUILTIN_TIERS.map((t) => t.toUpperCase())],
        )
          .split('\n')
          .map((l) => (l ? `  ${l}` : l))
          .join('\n')}`,
      )
      .action(
        async (
          manifestFile: string | undefined,
          opts: { tier: string; bundle?: string[]; env?: string; json?: boolean },
          cmd: Command,
        ) => {
          if (opts.bundle && manifestFile) throw usageError('give a manifest or --bundle, not both');
          if (opts.bundle) {
            const plan = await printServerPlan(cmd, { ...opts, bundle: opts.bundle });
            if (!opts.json && plan.plan.length === 0) note('Nothing to plan.');
            return;
          }
          if (!manifestFile) throw usageError('give a manifest, or --bundle to plan from the server');
          const manifest = loadManifest(manifestFile);
          const rows = planFor(manifest.secrets, opts.tier);
          const env = environmentFor(manifest, opts.env ?? globalsOf(cmd).env, opts.tier);
          if (env.warning) note(env.warning);
          const environment = env.slug ?? 'default';
          if (opts.json) return json({ tier: opts.tier, environment, secrets: rows });
          note(`Tier ${opts.tier}: secrets are injected from the ${environment} environment (${env.source}).`);
          const s = styleFor(process.stdout);
          out(
            table(
              rows.map((r) => [r.path, r.class ?? '', paintAction(s, r.action), r.why]),
              ['PATH', 'CLASS', 'ACTION', 'WHY'].map(s.bold),
            ),
          );
        },
      ),
    [
      '$ coffer plan deploy/secrets.yaml --tier desktop',
      '$ coffer plan deploy/secrets.yaml --tier cloud --json',
      '$ coffer plan --bundle sandbox/app --tier local --env staging     # the server’s strategy',
      '',
      'Manifest: environments maps tiers to environments (a tier not named uses the tenant default):',
      '  environments:',
      '    cloud: production',
      '    desktop: staging',
    ],
  );
}
