import { EnvironmentSlug } from '@coffer/contracts';
import { type Command, Option } from 'commander';
import type { GlobalOptions } from '../context.ts';
import { usageError } from '../output.ts';

/**
 * The options of a command and its ancestors; a --url or --env given after the command name wins over one given
 * before it (and so over COFFER_URL, which commander puts on the program's --url).
 */
export const globalsOf = (cmd: Command): GlobalOptions => {
  const local = cmd.opts() as { url?: string; env?: string };
  return {
    ...(cmd.optsWithGlobals() as GlobalOptions),
    ...(local.url ? { url: local.url } : {}),
    ...(local.env !== undefined ? { env: local.env } : {}),
  };
};

export const EXIT_CODES_LINE = 'Exit codes: 0 ok, 1 failure, 2 usage, 3 not found, 4 denied.';

/** Appends "Examples:" and the exit codes to a command's --help. */
export function examples(cmd: Command, lines: string[], exitCodes: string = EXIT_CODES_LINE): Command {
  return cmd.addHelpText('after', `\nExamples:\n${lines.map((l) => `  ${l}`).join('\n')}\n\n${exitCodes}\n`);
}

export function positiveInt(name: string) {
  return (raw: string): number => {
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 1) throw usageError(`${name} must be a positive whole number, not "${raw}"`);
    return n;
  };
}

export function nonNegativeInt(name: string) {
  return (raw: string): number => {
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 0) throw usageError(`${name} must be a whole number ≥ 0, not "${raw}"`);
    return n;
  };
}

const DURATION = /^(\d+(?:\.\d+)?)(s|m|h|d)$/;
const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `15m`, `24h`, `7d` (before now), or an RFC 3339 timestamp. */
export function timeArg(name: string) {
  return (raw: string): string => {
    const d = DURATION.exec(raw);
    if (d) return new Date(Date.now() - Number(d[1]) * (UNIT_MS[d[2] as string] ?? 0)).toISOString();
    const t = Date.parse(raw);
    if (Number.isNaN(t) || !/^\d{4}-\d{2}-\d{2}/.test(raw))
      throw usageError(`${name} must be a duration like 15m, 24h, 7d or a timestamp like 2025-01-31T12:00:00Z`);
    return new Date(t).toISOString();
  };
}

/** Repeatable options (`--bundle a --bundle b`). */
export const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

/** `--env <slug>`: the environment a command works in (the tenant's `default` when absent). */
export function envOption(description = 'the environment (default: the tenant’s default)'): Option {
  return new Option('--env <slug>', description).argParser((raw: string) => {
    if (!EnvironmentSlug.safeParse(raw).success)
      throw usageError(`--env must be an environment slug (lower-case letters, digits, _ or -), not "${raw}"`);
    return raw;
  });
}

/** `7d`, `12h`, `90m`: a window back from now, as the API takes it. */
export function windowArg(name: string) {
  return (raw: string): string => {
    if (!/^\d{1,5}[smhd]$/.test(raw)) throw usageError(`${name} must be a duration like 90m, 12h or 30d, not "${raw}"`);
    return raw;
  };
}
