import { type CofferClient, parseOwnerPath } from '@coffer/sdk';
import type { Command } from 'commander';
import { inheritedEnv } from '../config.ts';
import { connect } from '../context.ts';
import { CliError, EXIT, usageError } from '../output.ts';
import { injectBundle, runChild } from '../run-core.ts';
import { collect, examples, globalsOf } from './common.ts';

/**
 * Injects what a deployment receives: each of its bundles read for it (`?deployment=`), so the server returns only
 * what the plan injects and generated, and records path@version on the deployment. A planned secret the read did not
 * return (this identity may not read it) stops the run unless --allow-empty, as an empty bundle does.
 */
async function injectDeployment(
  client: CofferClient,
  id: string,
  env: Record<string, string>,
  opts: Parameters<typeof injectBundle>[3],
): Promise<void> {
  const d = await client.getDeployment(id);
  if (d.revokedAt) throw new CliError(`deployment ${id} was revoked at ${d.revokedAt}`, EXIT.failure);
  for (const ref of d.bundles) {
    const o = parseOwnerPath(ref);
    const bundle = await client.getBundle(o.kind, o.owner, { deployment: id, env: d.environment });
    const planned = d.plan
      .filter((i) => (i.action === 'inject' || i.action === 'generate') && i.path.startsWith(`${ref}/`))
      .map((i) => i.path.slice(ref.length + 1));
    const missing = planned.filter((n) => !Object.hasOwn(bundle.values, n));
    if (missing.length > 0 && !opts.allowEmpty) {
      throw new CliError(
        `deployment ${id} plans ${missing.join(', ')} from ${ref}, which this identity may not read (or pass --allow-empty)`,
        EXIT.denied,
      );
    }
    injectBundle(env, ref, bundle.values, { ...opts, allowEmpty: true });
  }
}

export function registerRun(program: Command): void {
  examples(
    program
      .command('run')
      .summary('Run a command with a bundle as environment variables')
      .description(
        "Run a command with a bundle's secrets as environment variables. Nothing is printed and nothing is written " +
          "to disk; signals go to the command, and coffer exits with the command's exit code (128+n if a signal n " +
          'ended it, 127 if the command was not found).',
      )
      .option('--bundle <kind/owner>', 'the bundle to inject (repeat it: later bundles win)', collect)
      .option(
        '--deployment <id>',
        "inject what this deployment receives (its plan's injected and generated secrets, from its bundles and " +
          'environment), recorded on the deployment',
      )
      .option('--no-override', 'keep variables already set in the environment instead of replacing them')
      .option('--allow-empty', 'run even if a bundle has no secrets this identity may read')
      .option(
        '--allow-env <name>',
        'inject this variable even though it changes how processes load code (PATH, NODE_OPTIONS, LD_*, …); repeat it',
        collect,
      )
      .option('--allow-loader-env', 'inject every such variable the bundle holds')
      .argument('<command...>', 'the command and its arguments, after --')
      .passThroughOptions()
      .action(
        async (
          command: string[],
          opts: {
            bundle?: string[];
            deployment?: string;
            override: boolean;
            allowEmpty?: boolean;
            allowEnv?: string[];
            allowLoaderEnv?: boolean;
          },
          cmd: Command,
        ) => {
          const [file, ...args] = command;
          if (!file) throw usageError('give the command to run after --');
          if (opts.bundle && opts.deployment) throw usageError('--deployment brings its own bundles: drop --bundle');
          if (!opts.bundle && !opts.deployment) throw usageError('give --bundle <kind/owner> or --deployment <id>');
          const { client } = connect(globalsOf(cmd));
          const env = inheritedEnv();
          if (opts.deployment) {
            await injectDeployment(client, opts.deployment, env, opts);
          } else {
            for (const o of (opts.bundle ?? []).map((b) => parseOwnerPath(b))) {
              const bundle = await client.getBundle(o.kind, o.owner);
              injectBundle(env, `${o.kind}/${o.owner}`, bundle.values, opts);
            }
          }
          process.exitCode = await runChild(file, args, env);
        },
      ),
    [
      '$ coffer run --bundle sandbox/sbx-42 -- node server.js',
      '$ coffer run --deployment 0190f2c4-… -- node server.js        # recorded on the deployment',
      '$ coffer run --bundle shared/common --bundle sandbox/sbx-42 -- npm run migrate',
      '$ coffer run --bundle sandbox/sbx-42 -- sh -c \'psql "$DATABASE_URL" -c "select 1"\'',
    ],
    "Exit codes: the command's own; 128+n if signal n ended it; 127 not found, 126 not executable; before the " +
      'command starts: 1 failure, 2 usage, 3 empty bundle, 4 denied.',
  );
}
