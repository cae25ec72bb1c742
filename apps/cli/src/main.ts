#!/usr/bin/env node
import module from 'node:module';
import { readEnv } from './config.ts';
import { fastRun } from './fast-run.ts';
import { VERSION } from './meta.ts';
import { CliError, setColorAllowed, styleFor } from './output.ts';

// V8's code cache for the chunks loaded below (Node 22.1+; a no-op before): a later run skips compiling them.
(module as { enableCompileCache?: () => unknown }).enableCompileCache?.();

/**
 * Runs the CLI; resolves with the exit code. Every failure is one line on stderr, never a secret value.
 *
 * This file and what it imports are the CLI's entry, bundled on their own as CommonJS (build.mjs): `coffer run`
 * with a cached token needs nothing else (fast-run.ts), and a process that starts with every deployment should not
 * pay for the rest, nor for Node's ES module loader. Everything else is the full CLI (cli.ts), an ES module bundle
 * imported only when needed.
 */
async function main(argv: string[]): Promise<number> {
  // The version alone needs none of the full CLI, which cost `coffer --version` about 200 ms of CPU to load.
  const [only, ...rest] = argv.slice(2);
  if (rest.length === 0 && (only === '--version' || only === '-v')) {
    process.stdout.write(`coffer ${VERSION}\n`);
    return 0;
  }
  let fast: number | null;
  try {
    fast = await fastRun(argv);
  } catch (e) {
    if (!(e instanceof CliError)) return (await import('./cli.ts')).report(e, argv);
    setColorAllowed(!readEnv().noColor && !argv.includes('--no-color'));
    process.stderr.write(`${styleFor(process.stderr).red('coffer:')} ${e.message}\n`);
    return e.exitCode;
  }
  if (fast !== null) return fast;
  return (await import('./cli.ts')).runProgram(argv);
}

process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  // `coffer ls | head` closes the pipe early: that is not a failure.
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});

main(process.argv).then((code) => {
  process.exitCode = code;
});
