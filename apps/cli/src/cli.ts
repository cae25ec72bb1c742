import type { IncomingHttpHeaders } from 'node:http';
import { readEnv } from './config.ts';
import { CliError, describeCofferError, EXIT, exitCodeFor, setColorAllowed, styleFor } from './output.ts';

/**
 * The full CLI: commander and every command, loaded by main.ts when the fast path of `coffer run` does not apply.
 * Its own bundle (ES modules, split into chunks that load as a command needs them), apart from main.ts's.
 */
export async function runProgram(argv: string[]): Promise<number> {
  setColorAllowed(!readEnv().noColor && !argv.includes('--no-color'));
  try {
    const { buildProgram } = await import('./program.ts');
    await buildProgram().parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (e) {
    return report(e);
  }
}

/** One line on stderr, never a secret value; resolves with the exit code. */
export async function report(e: unknown, argv: readonly string[] = process.argv): Promise<number> {
  setColorAllowed(!readEnv().noColor && !argv.includes('--no-color'));
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

/** The SDK's error for an answer the fast path got, so that it reports exactly what the full command would. */
export async function errorFromResponse(status: number, headers: IncomingHttpHeaders, text: string): Promise<Error> {
  const sdk = await import('@coffer/sdk');
  const h = new Headers();
  for (const [k, v] of Object.entries(headers)) if (typeof v === 'string') h.set(k, v);
  return sdk.errorFromResponse(status, h, text);
}
