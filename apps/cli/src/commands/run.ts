import { parseOwnerPath } from '@coffer/sdk';
import type { Command } from 'commander';
import { inheritedEnv } from '../config.ts';
import { connect } from '../context.ts';
import { usageError } from '../output.ts';
import { injectBundle, runChild } from '../run-core.ts';
import { examples, globalsOf } from './common.ts';

const collect = (value: string, previous: string[] = []) => [...previous, value];

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
      .requiredOption('--bundle <kind/owner>', 'the bundle to inject (repeat it: later bundles win)', collect)
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
            bundle: string[];
            override: boolean;
            allowEmpty?: boolean;
            allowEnv?: string[];
            allowLoaderEnv?: boolean;
          },
          cmd: Command,
        ) => {
          const [file, ...args] = command;
          if (!file) throw usageError('give the command to run after --');
          const owners = opts.bundle.map((b) => parseOwnerPath(b));
          const { client } = connect(globalsOf(cmd));
          const env = inheritedEnv();
          for (const o of owners) {
            const bundle = await client.getBundle(o.kind, o.owner);
            injectBundle(env, `${o.kind}/${o.owner}`, bundle.values, opts);
          }
          process.exitCode = await runChild(file, args, env);
        },
      ),
    [
      '$ coffer run --bundle sandbox/sbx-42 -- node server.js',
      '$ coffer run --bundle shared/common --bundle sandbox/sbx-42 -- npm run migrate',
      '$ coffer run --bundle sandbox/sbx-42 -- sh -c \'psql "$DATABASE_URL" -c "select 1"\'',
    ],
    "Exit codes: the command's own; 128+n if signal n ended it; 127 not found, 126 not executable; before the " +
      'command starts: 1 failure, 2 usage, 3 empty bundle, 4 denied.',
  );
}
