import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { refuseLoaderEnv } from './loader-env.ts';
import { CliError, EXIT } from './output.ts';

/** Adds one bundle's values to the child's environment; refuses an empty bundle unless `allowEmpty`. */
export function injectBundle(
  env: Record<string, string>,
  bundle: string,
  values: Record<string, string>,
  opts: {
    override: boolean;
    allowEmpty?: boolean | undefined;
    allowEnv?: string[] | undefined;
    allowLoaderEnv?: boolean | undefined;
  },
): void {
  // A typo in the owner, or an identity that may read none of it, answers an empty bundle: starting the command
  // without its secrets would fail later and less clearly, so stop here.
  if (Object.keys(values).length === 0 && !opts.allowEmpty) {
    throw new CliError(
      `${bundle} has no secrets this identity may read (check the name and the policies, or pass --allow-empty)`,
      EXIT.notFound,
    );
  }
  refuseLoaderEnv(Object.keys(values), bundle, opts);
  for (const [name, value] of Object.entries(values)) {
    if (opts.override || env[name] === undefined) env[name] = value;
  }
}

const FORWARDED: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH'];

/** Runs the child with inherited stdio; resolves with the exit code to use, or re-raises the signal that killed it. */
export function runChild(file: string, args: string[], env: Record<string, string>): Promise<number> {
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
