import { Generator, GeneratorCharset, type RotationPolicy, Tag } from '@coffer/contracts';
import type { Command } from 'commander';
import { usageError } from '../output.ts';

const DAY_MS = 86_400_000;

/** `30d`, `12h`, `90m` from now, an RFC 3339 timestamp, or `none` (no expiry). */
export function expiresArg(raw: string): string | null {
  if (raw === 'none') return null;
  const d = /^(\d{1,5})(m|h|d)$/.exec(raw);
  if (d) {
    const unit = d[2] === 'd' ? DAY_MS : d[2] === 'h' ? 3_600_000 : 60_000;
    return new Date(Date.now() + Number(d[1]) * unit).toISOString();
  }
  const t = Date.parse(raw);
  if (Number.isNaN(t) || !/^\d{4}-\d{2}-\d{2}T/.test(raw))
    throw usageError(`--expires must be a duration like 30d, a timestamp like 2027-01-31T12:00:00Z, or none`);
  return new Date(t).toISOString();
}

/** Repeatable `--tag k=v` (or a bare tag): collected in order, each checked against the contract's rule. */
export function tagArg(raw: string, previous: string[] = []): string[] {
  if (!Tag.safeParse(raw).success) throw usageError(`--tag "${raw}": ${Tag.safeParse(raw).error?.issues[0]?.message}`);
  return [...previous, raw];
}

/** `90d` or `90`: the rotation interval in whole days (the contract's unit). */
export function intervalArg(raw: string): number {
  const m = /^(\d{1,4})d?$/.exec(raw);
  const n = m ? Number(m[1]) : Number.NaN;
  if (!Number.isInteger(n) || n < 1 || n > 3650) throw usageError(`--rotate-every must be 1d to 3650d, not "${raw}"`);
  return n;
}

/** `charset:length[:prefix]`, e.g. `hex:64`, `base64url:32:sk_live_`. */
export function generatorArg(raw: string): Generator {
  const [charset, length, ...prefix] = raw.split(':');
  const parsed = Generator.safeParse({
    charset,
    length: Number(length),
    ...(prefix.length > 0 ? { prefix: prefix.join(':') } : {}),
  });
  if (!parsed.success)
    throw usageError(
      `--generator must be charset:length[:prefix] with charset ${GeneratorCharset.options.join(', ')} and length 8-4096, not "${raw}"`,
    );
  return parsed.data;
}

export function graceArg(raw: string): number {
  const m = /^(\d{1,4})h?$/.exec(raw);
  const n = m ? Number(m[1]) : Number.NaN;
  if (!Number.isInteger(n) || n < 0 || n > 8760) throw usageError(`--grace must be 0h to 8760h, not "${raw}"`);
  return n;
}

export interface MetadataOptions {
  expires?: string | null;
  tag?: string[];
  rotateEvery?: number;
  generator?: Generator;
  grace?: number;
  rotation?: boolean;
}

/** The metadata options `set` and `update` share. */
export function metadataOptions(cmd: Command): Command {
  return cmd
    .option('--expires <when>', 'expire after a duration (30d, 12h), at a timestamp, or "none"', expiresArg)
    .option('--tag <tag>', 'a tag such as team=payments (repeat for more; replaces the tags)', tagArg)
    .option('--rotate-every <days>', 'a rotation schedule, e.g. 90d', intervalArg)
    .option('--generator <spec>', 'let Coffer make new values: charset:length[:prefix], e.g. hex:64', generatorArg)
    .option('--grace <hours>', 'how long the previous version stays readable after a rotation (default 24h)', graceArg);
}

/** The contract's fields for the options given (and only those, so `update` changes nothing else). */
export function metadataFields(opts: MetadataOptions): {
  expiresAt?: string | null;
  tags?: string[];
  rotation?: RotationPolicy | null;
} {
  if ((opts.generator !== undefined || opts.grace !== undefined) && opts.rotateEvery === undefined)
    throw usageError('--generator and --grace belong to a rotation schedule: add --rotate-every');
  return {
    ...(opts.expires !== undefined ? { expiresAt: opts.expires } : {}),
    ...(opts.tag !== undefined ? { tags: opts.tag } : {}),
    ...(opts.rotation === false ? { rotation: null } : {}),
    ...(opts.rotateEvery !== undefined
      ? {
          rotation: {
            intervalDays: opts.rotateEvery,
            graceHours: opts.grace ?? 24,
            ...(opts.generator ? { generator: opts.generator } : {}),
          },
        }
      : {}),
  };
}
