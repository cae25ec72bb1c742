import { writeFileSync } from 'node:fs';
import { BUILTIN_TIERS, type Deployment, Tier } from '@coffer/contracts';
import { parseOwnerPath } from '@coffer/sdk';
import type { Command } from 'commander';
import { connect } from '../context.ts';
import { serialise } from '../envfile.ts';
import { json, note, out, styleFor, table, usageError } from '../output.ts';
import { collect, envOption, examples, globalsOf, positiveInt } from './common.ts';
import { paintAction, printServerPlan } from './plan.ts';

function tierArg(raw: string): string {
  if (Tier.safeParse(raw).success) return raw;
  throw usageError(`--tier must be a tier (${BUILTIN_TIERS.join(', ')}, or one a strategy names), not "${raw}"`);
}

const bundlesOf = (raw: string[]) =>
  raw.map((b) => {
    const o = parseOwnerPath(b);
    return `${o.kind}/${o.owner}`;
  });

function printDeployment(d: Deployment): void {
  const s = styleFor(process.stdout);
  out(
    `${s.bold(d.name)}  ${d.id}\n` +
      `environment ${d.environment}, tier ${d.tier}, bundles ${d.bundles.join(', ')}\n` +
      `made ${d.createdAt} by ${d.createdBy.name ?? d.createdBy.id ?? 'unknown'}` +
      `${d.revokedAt ? s.red(`, revoked ${d.revokedAt}`) : ''}\n\n`,
  );
  out(
    table(
      d.plan.map((i) => [i.path, paintAction(s, i.action), i.version === null ? '' : String(i.version), i.reason]),
      ['PATH', 'ACTION', 'VERSION', 'WHY'].map(s.bold),
    ),
  );
  out('\nReceived:\n');
  if (d.received.length === 0) out('  nothing yet (coffer run --deployment records what it injects)\n');
  else
    out(
      table(
        d.received.map((r) => [
          `${r.path}@${r.version}`,
          r.via,
          r.by.name ?? r.by.id ?? '',
          r.firstAt,
          r.lastAt,
          String(r.reads),
        ]),
        ['SECRET', 'VIA', 'BY', 'FIRST', 'LAST', 'READS'].map(s.bold),
      ),
    );
  if (d.revocation) {
    const r = d.revocation;
    out(
      `\nRevoked ${r.revokedAt} by ${r.revokedBy.name ?? r.revokedBy.id ?? 'unknown'}${r.notes ? ` (${r.notes})` : ''}: ` +
        `rotated ${r.rotated.map((x) => `${x.path} ${x.fromVersion}→${x.toVersion}`).join(', ') || 'nothing'}; ` +
        `revoked ${r.revokedVersions.map((x) => `${x.path}@${x.version}`).join(', ') || 'nothing'}; ` +
        `${r.leasesRevoked} lease${r.leasesRevoked === 1 ? '' : 's'}\n`,
    );
  }
}

export function registerDeploy(program: Command): void {
  const deploy = program
    .command('deploy')
    .summary('Plan, make, show and revoke deployments')
    .description(
      'Deployments: what each tier does with each secret (from the strategies stored on the server), service ' +
        'secrets generated fresh for each deployment, the record of what a deployment received, and its revocation.',
    );

  examples(
    deploy
      .command('plan')
      .summary('What a deployment would do with each secret (a dry run)')
      .requiredOption('--bundle <kind/owner>', 'a bundle of the deployment (repeat it)', collect)
      .requiredOption('--tier <tier>', `${BUILTIN_TIERS.join(' | ')}, or a tier a strategy names`, tierArg)
      .addOption(envOption())
      .option('--json', 'print the plan as JSON')
      .action(async (opts: { bundle: string[]; tier: string; env?: string; json?: boolean }, cmd: Command) => {
        await printServerPlan(cmd, opts);
      }),
    ['$ coffer deploy plan --bundle sandbox/app --tier desktop --env staging'],
  );

  examples(
    deploy
      .command('create')
      .summary('Make a deployment; its generated values are shown once')
      .requiredOption('--name <name>', 'what to call it (a release, a build)')
      .requiredOption('--bundle <kind/owner>', 'a bundle of the deployment (repeat it)', collect)
      .requiredOption('--tier <tier>', `${BUILTIN_TIERS.join(' | ')}, or a tier a strategy names`, tierArg)
      .addOption(envOption())
      .option('--output <file>', 'write the generated values there as dotenv (mode 0600) instead of standard output')
      .option('--json', 'print the deployment, its plan and the generated values as JSON')
      .action(
        async (
          opts: { name: string; bundle: string[]; tier: string; env?: string; output?: string; json?: boolean },
          cmd: Command,
        ) => {
          const { client } = connect(globalsOf(cmd));
          const d = await client.createDeployment({
            name: opts.name,
            tier: opts.tier,
            bundles: bundlesOf(opts.bundle),
            ...(opts.env !== undefined ? { environment: opts.env } : {}),
          });
          const names = Object.keys(d.generated);
          if (opts.output)
            writeFileSync(opts.output, names.length ? serialise(d.generated, 'dotenv') : '', { mode: 0o600 });
          if (opts.json) {
            // With --output the values go only to the file: the JSON names them and says where they are.
            json(opts.output ? { ...d, generated: {}, generatedNames: names, generatedTo: opts.output } : d);
          } else {
            const s = styleFor(process.stdout);
            out(`${d.id}\n`);
            out(
              table(
                d.plan.map((i) => [
                  i.path,
                  paintAction(s, i.action),
                  i.version === null ? '' : String(i.version),
                  i.prompt ? `${i.reason}: "${i.prompt.label}"` : i.reason,
                ]),
                ['PATH', 'ACTION', 'VERSION', 'WHY'].map(s.bold),
              ),
            );
            // Each prompt's one-time link, for the person who holds the value (shown once, as the server answers).
            const links = d.plan.filter((i) => i.intake);
            if (links.length > 0)
              out(
                `\nIntake links:\n${links.map((i) => `  ${i.path}  ${i.intake?.url} (until ${i.intake?.expiresAt})`).join('\n')}\n`,
              );
            if (names.length > 0 && !opts.output) out(`\n${serialise(d.generated, 'dotenv')}`);
          }
          note(
            `Deployment ${d.id} (${d.name}) made in ${d.environment} for ${d.tier}: ` +
              `${d.counts.generate} generated, ${d.counts.inject} injected, ${d.counts.prompt} prompted, ${d.counts.strip} stripped.`,
          );
          if (names.length > 0) {
            note(
              opts.output
                ? `The generated values are in ${opts.output}; Coffer shows them nowhere else.`
                : 'The generated values above are shown this once: keep them now (or use --output <file>).',
            );
          }
        },
      ),
    [
      '$ coffer deploy create --name desktop-1.4.2 --bundle sandbox/app --tier desktop --output build/generated.env',
      '$ coffer deploy create --name web-2025-06-01 --bundle shared/web --tier cloud --env production --json',
    ],
  );

  examples(
    deploy
      .command('ls')
      .alias('list')
      .summary('List deployments, newest first')
      .addOption(envOption('only deployments to this environment (default: every environment)'))
      .option('--secret <path>', 'only deployments that received this secret (kind/owner/name)')
      .option('--limit <n>', 'at most this many', positiveInt('--limit'), 100)
      .option('--json', 'print as JSON')
      .action(async (opts: { env?: string; secret?: string; limit: number; json?: boolean }, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        const items = [];
        for await (const d of client.listDeployments({
          limit: Math.min(opts.limit, 1000),
          ...(opts.env ? { env: opts.env } : {}),
          ...(opts.secret ? { secret: opts.secret } : {}),
        })) {
          items.push(d);
          if (items.length >= opts.limit) break;
        }
        if (opts.json) return json(items);
        if (items.length === 0) return note('No deployments.');
        const s = styleFor(process.stdout);
        out(
          table(
            items.map((d) => [
              d.id,
              d.name,
              d.environment,
              d.tier,
              d.createdAt,
              d.revokedAt ? s.red(`revoked ${d.revokedAt}`) : '',
            ]),
            ['ID', 'NAME', 'ENVIRONMENT', 'TIER', 'CREATED', 'STATE'].map(s.bold),
          ),
        );
      }),
    ['$ coffer deploy ls --env production', '$ coffer deploy ls --secret sandbox/app/SESSION_KEY --json'],
  );

  examples(
    deploy
      .command('show')
      .summary('What a deployment received: path@version, when, by whom')
      .argument('<id>', 'the deployment id')
      .option('--json', 'print as JSON')
      .action(async (id: string, opts: { json?: boolean }, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        const d = await client.getDeployment(id);
        if (opts.json) return json(d);
        printDeployment(d);
      }),
    ['$ coffer deploy show 0190f2c4-…', '$ coffer deploy show 0190f2c4-… --json | jq .received'],
  );

  examples(
    deploy
      .command('revoke')
      .summary('Revoke a deployment: rotate what was generated for it')
      .argument('<id>', 'the deployment id')
      .option('--notes <text>', 'why, for the rotation log')
      .option('--json', 'print what was rotated and revoked as JSON')
      .action(async (id: string, opts: { notes?: string; json?: boolean }, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        const r = await client.revokeDeployment(id, opts.notes !== undefined ? { notes: opts.notes } : {});
        if (opts.json) return json(r);
        for (const x of r.rotated) out(`rotated ${x.path}: ${x.fromVersion} → ${x.toVersion}\n`);
        for (const x of r.revokedVersions) out(`revoked ${x.path}@${x.version}\n`);
        note(
          `Revoked deployment ${id}: ${r.rotated.length} rotated, ${r.revokedVersions.length} versions revoked, ` +
            `${r.leasesRevoked} leases revoked.`,
        );
      }),
    ['$ coffer deploy revoke 0190f2c4-… --notes "laptop lost"'],
  );
}
