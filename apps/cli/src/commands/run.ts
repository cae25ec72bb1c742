import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { parseOwnerPath } from '@coffer/sdk';
import type { Command } from 'commander';
import { inheritedEnv } from '../config.ts';
import { connect } from '../context.ts';
import { refuseLoaderEnv } from '../loader-env.ts';
import { CliError, EXIT, usageError } from '../output.ts';
import { examples, globalsOf } from './common.ts';

const FORWARDED: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH'];

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
            // A typo in the owner, or an identity that may read none of it, answers an empty bundle: starting the
            // command without its secrets would fail later and less clearly, so stop here.
            if (Object.keys(bundle.values).length === 0 && !opts.allowEmpty) {
              throw new CliError(
                `${o.kind}/${o.owner} has no secrets this identity may read (check the name and the policies, or pass --allow-empty)`,
                EXIT.notFound,
              );
            }
            refuseLoaderEnv(Object.keys(bundle.values), `${o.kind}/${o.owner}`, opts);
            for (const [name, value] of Object.entries(bundle.values)) {
              if (opts.override || env[name] === undefined) env[name] = value;
            }
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

/** Runs the child with inherited stdio; resolves with the exit code to use, or re-raises the signal that killed it. */
function runChild(file: string, args: string[], env: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: 'inherit', env });
    const forward = (signal: NodeJS.Signals) => () => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    };
    const handlers = FORWARDED.map((s) => [s, forward(s)] as const);
    for (const [s, h] of handlers) process.on(s, h);
    const cleanup = () => {
      for (const [s, h] of handlers) process.off(s, h);
    };
    child.on('error', (e: NodeJS.ErrnoException) => {
      cleanup();
      if (e.code === 'ENOENT') reject(new CliError(`command not found: ${file}`, 127));
      else if (e.code === 'EACCES') reject(new CliError(`permission denied: ${file}`, 126));
      else reject(new CliError(`cannot run ${file}: ${e.code ?? e.message}`));
    });
    child.on('exit', (code, signal) => {
      cleanup();
      if (signal) {
        // End the way the child ended, so whoever waits on coffer sees the same signal.
        try {
          process.kill(process.pid, signal);
        } catch {
          // fall back to the shell convention below
        }
        resolve(128 + ((constants.signals as Record<string, number>)[signal] ?? 0));
        return;
      }
      resolve(code ?? 1);
    });
  });
}
