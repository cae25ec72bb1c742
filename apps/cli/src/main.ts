#!/usr/bin/env node
import module from 'node:module';
import { readEnv } from './config.ts';
import { fastRun } from './fast-run.ts';
import { CliError, describeCofferError, EXIT, exitCodeFor, setColorAllowed, styleFor } from './output.ts';

// V8's code cache for the chunks loaded below (Node 22.1+; a no-op before): a later run skips compiling them.
(module as { enableCompileCache?: () => unknown }).enableCompileCache?.();

/**
 * Runs the CLI; resolves with the exit code. Every failure is one line on stderr, never a secret value.
 * Commander, the commands and the SDK load only when needed: `coffer run` with a cached token needs none of them
 * (fast-run.ts), and a process that starts with every deployment should not pay for them.
 */
export async function main(argv: string[]): Promise<number> {
  setColorAllowed(!readEnv().noColor && !argv.includes('--no-color'));
  try {
    const fast = await fastRun(argv);
    if (fast !== null) return fast;
    const { buildProgram } = await import('./program.ts');
    await buildProgram().parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (e) {
    return report(e);
  }
}

async function report(e: unknown): Promise<number> {
  const s = styleFor(process.stderr);
  if (e instanceof CliError) {
    process.stderr.write(`${s.red('coffer:')} ${e.message}\n`);
    return e.exitCode;
  }
  const [{ CommanderError }, { CofferError }] = await Promise.all([import('commander'), import('@coffer/sdk')]);
  if (e instanceof CommanderError) {
    // Commander has printed its own message (or the help / version, which exit 0).
    return e.exitCode === 0 ? EXIT.ok : EXIT.usage;
  }
  if (e instanceof CofferError) {
    process.stderr.write(`${s.red('coffer:')} ${describeCofferError(e)}\n`);
    // A path the user typed that the SDK refused before sending anything is a usage error.
    return e.status === 0 && e.code === 'validation_failed' ? EXIT.usage : exitCodeFor(e);
  }
  process.stderr.write(`${s.red('coffer:')} unexpected error: ${e instanceof Error ? e.message : 'unknown'}\n`);
  return EXIT.failure;
}
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  // `coffer ls | head` closes the pipe early: that is not a failure.
  if (e.code === 'EPIPE') process.exit(EXIT.ok);
  throw e;
});

main(process.argv).then((code) => {
  process.exitCode = code;
});
