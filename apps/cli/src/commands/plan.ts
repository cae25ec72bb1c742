import type { Command } from 'commander';
import {
  ACTION_MEANING,
  environmentFor,
  loadManifest,
  type PlanAction,
  type SecretClass,
  TIER_RULES,
  TIERS,
  type Tier,
  tierArg,
} from '../manifest.ts';
import { json, note, out, styleFor, table, usageError } from '../output.ts';
import { examples, globalsOf } from './common.ts';

export interface PlanRow {
  path: string;
  class: SecretClass;
  action: PlanAction;
  why: string;
}

export function planFor(secrets: ReturnType<typeof loadManifest>['secrets'], tier: Tier): PlanRow[] {
  const unclassified = secrets.filter((s) => s.class === undefined).map((s) => s.path);
  if (unclassified.length > 0)
    throw usageError(`coffer plan needs a class (infrastructure, service or user) for: ${unclassified.join(', ')}`);
  return secrets.map((s) => {
    const cls = s.class as SecretClass;
    const override = s.tiers?.[tier];
    const action = override ?? TIER_RULES[cls][tier];
    return {
      path: s.path,
      class: cls,
      action,
      why: override ? `${ACTION_MEANING[action]} (set for ${tier} in the manifest)` : ACTION_MEANING[action],
    };
  });
}

export function registerPlan(program: Command): void {
  examples(
    program
      .command('plan')
      .summary('What a deployment tier does with each secret')
      .argument('<manifest>', 'a manifest (.json, .yaml or .yml) whose secrets each have a class')
      .description(
        'What a deployment tier does with each secret of the manifest, from its class: strip (never shipped), ' +
          'generate (new for each deployment), prompt (the user supplies it at run time) or inject (from Coffer). ' +
          'Reads only the manifest: no server, no credentials. Injected secrets come from the environment the ' +
          "manifest's `environments` maps the tier to (--env or COFFER_ENV win), as coffer run --env does.",
      )
      .requiredOption('--tier <tier>', TIERS.join(' | '), tierArg)
      .option('--json', 'print the plan as JSON')
      .addHelpText(
        'after',
        `\nDefaults by class (a secret's "tiers" map in the manifest overrides them):\n${table(
          (Object.keys(TIER_RULES) as SecretClass[]).map((c) => [c, ...TIERS.map((t) => TIER_RULES[c][t])]),
          ['CLASS', ...TIERS.map((t) => t.toUpperCase())],
        )
          .split('\n')
          .map((l) => (l ? `  ${l}` : l))
          .join('\n')}`,
      )
      .action((manifestFile: string, opts: { tier: Tier; json?: boolean }, cmd: Command) => {
        const manifest = loadManifest(manifestFile);
        const rows = planFor(manifest.secrets, opts.tier);
        const env = environmentFor(manifest, globalsOf(cmd).env, opts.tier);
        if (env.warning) note(env.warning);
        const environment = env.slug ?? 'default';
        if (opts.json) return json({ tier: opts.tier, environment, secrets: rows });
        note(`Tier ${opts.tier}: secrets are injected from the ${environment} environment (${env.source}).`);
        const s = styleFor(process.stdout);
        const paint = (a: PlanAction) =>
          a === 'strip' ? s.red(a) : a === 'generate' ? s.green(a) : a === 'prompt' ? s.yellow(a) : a;
        out(
          table(
            rows.map((r) => [r.path, r.class, paint(r.action), r.why]),
            ['PATH', 'CLASS', 'ACTION', 'WHY'].map(s.bold),
          ),
        );
      }),
    [
      '$ coffer plan deploy/secrets.yaml --tier desktop',
      '$ coffer plan deploy/secrets.yaml --tier cloud --json',
      '',
      'Manifest: environments maps tiers to environments (a tier not named uses the tenant default):',
      '  environments:',
      '    cloud: production',
      '    desktop: staging',
    ],
  );
}
