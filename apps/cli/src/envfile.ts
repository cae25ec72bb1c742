import { SecretName, SecretValue } from '@coffer/contracts';
import { parse as parseDotenv } from 'dotenv';
import YAML from 'yaml';
import { CliError, usageError } from './output.ts';

export const EXPORT_FORMATS = ['dotenv', 'json', 'yaml', 'shell'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

/**
 * A `.env` file, parsed by dotenv: `KEY=value`, `export KEY=…`, single, double and backtick quotes, multiline
 * values inside quotes, `\n` in double quotes, `#` comments. Names must be valid secret names; a problem names the
 * key and the rule, never the value.
 */
export function parseEnvFile(text: string, source: string): Record<string, string> {
  const values = text.trimStart().startsWith('{') ? parseJsonObject(text, source) : parseDotenvStrict(text, source);
  const problems: string[] = [];
  for (const [name, value] of Object.entries(values)) {
    if (!SecretName.safeParse(name).success)
      problems.push(`${name}: not a valid secret name (letters, digits, _ . -, starting with a letter or _)`);
    const v = SecretValue.safeParse(value);
    if (!v.success) problems.push(`${name}: ${v.error.issues[0]?.message ?? 'not a valid value'}`);
  }
  if (problems.length > 0) throw usageError(`${source} cannot be imported:\n  ${problems.join('\n  ')}`);
  return values;
}

/** dotenv's own line rule: what it matches is what it keeps. */
const DOTENV_LINE =
  /(?:^|^)\s*(?:export\s+)?([\w.-]+)(?:\s*=\s*?|:\s+?)(\s*'(?:\\'|[^'])*'|\s*"(?:\\"|[^"])*"|\s*`(?:\\`|[^`])*`|[^#\r\n]+)?\s*(?:#.*)?(?:$|$)/gm;

/**
 * dotenv skips every line it cannot read, without a word: an import would then leave those names out and still
 * succeed. Whatever its rule does not match, and is neither blank nor a comment, is refused with its line number
 * (the line's text is not shown: it may hold a value).
 */
function parseDotenvStrict(text: string, source: string): Record<string, string> {
  const normal = text.replace(/\r\n?/g, '\n');
  const bad: number[] = [];
  let covered = 0;
  const checkGap = (from: number, to: number) => {
    let offset = from;
    for (const line of normal.slice(from, to).split('\n')) {
      const trimmed = line.trim();
      if (trimmed !== '' && !trimmed.startsWith('#')) {
        const lineNo = normal.slice(0, offset + line.indexOf(trimmed)).split('\n').length;
        if (!bad.includes(lineNo)) bad.push(lineNo);
      }
      offset += line.length + 1;
    }
  };
  for (const m of normal.matchAll(DOTENV_LINE)) {
    if (m[0] === '') continue;
    checkGap(covered, m.index);
    covered = m.index + m[0].length;
  }
  checkGap(covered, normal.length);
  if (bad.length > 0)
    throw usageError(
      `${source} cannot be imported: ${bad.length === 1 ? 'line' : 'lines'} ${bad.join(', ')} ${bad.length === 1 ? 'is' : 'are'} not KEY=value, a comment or blank`,
    );
  return parseDotenv(normal);
}

/** A JSON object of names to string values (what `coffer export --format json` writes). */
function parseJsonObject(text: string, source: string): Record<string, string> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw usageError(`${source} cannot be imported: it starts with { but is not valid JSON (${(e as Error).message})`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
    throw usageError(`${source} cannot be imported: JSON must be an object of names to string values`);
  const notStrings = Object.entries(parsed)
    .filter(([, v]) => typeof v !== 'string')
    .map(([k]) => k);
  if (notStrings.length > 0)
    throw usageError(`${source} cannot be imported: the values of ${notStrings.join(', ')} are not strings`);
  return parsed as Record<string, string>;
}

const sortedEntries = (values: Record<string, string>) =>
  Object.entries(values).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));

/** The first quoting that dotenv reads back as exactly this value. */
function dotenvLine(name: string, value: string): string | null {
  const candidates = [
    `${name}='${value}'`,
    `${name}="${value.replace(/\r/g, '\\r').replace(/\n/g, '\\n')}"`,
    `${name}=\`${value}\``,
    `${name}="${value}"`,
  ];
  for (const line of candidates) {
    const back = parseDotenv(line);
    if (Object.keys(back).length === 1 && back[name] === value) return line;
  }
  return null;
}

const SHELL_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Serialises a bundle; every format is checked to read back as exactly these values before anything is printed. */
export function serialise(values: Record<string, string>, format: ExportFormat): string {
  const entries = sortedEntries(values);
  switch (format) {
    case 'json':
      return `${JSON.stringify(Object.fromEntries(entries), null, 2)}\n`;
    case 'yaml': {
      if (entries.length === 0) return '{}\n';
      const text = YAML.stringify(Object.fromEntries(entries), { lineWidth: 0 });
      const back = YAML.parse(text) as Record<string, string>;
      const bad = entries.filter(([k, v]) => back[k] !== v).map(([k]) => k);
      if (bad.length > 0) throw new CliError(`cannot write ${bad.join(', ')} as YAML exactly; use --format json`);
      return text;
    }
    case 'shell': {
      const bad = entries.filter(([k]) => !SHELL_NAME.test(k)).map(([k]) => k);
      if (bad.length > 0)
        throw new CliError(
          `${bad.join(', ')}: a shell variable name is letters, digits and _ only (secret names may also hold . and -); ` +
            'nothing was written: use --format dotenv or json, or rename them',
        );
      return entries.map(([k, v]) => `export ${k}='${v.replace(/'/g, `'\\''`)}'\n`).join('');
    }
    case 'dotenv': {
      const lines: string[] = [];
      const bad: string[] = [];
      for (const [k, v] of entries) {
        const line = dotenvLine(k, v);
        if (line === null) bad.push(k);
        else lines.push(line);
      }
      if (bad.length > 0)
        throw new CliError(`dotenv cannot hold the values of ${bad.join(', ')} exactly; use --format json`);
      const text = lines.map((l) => `${l}\n`).join('');
      const back = parseDotenv(text);
      const drift = entries.filter(([k, v]) => back[k] !== v).map(([k]) => k);
      if (drift.length > 0) throw new CliError(`dotenv cannot hold ${drift.join(', ')} exactly; use --format json`);
      return text;
    }
    default: {
      const unreachable: never = format;
      throw usageError(`unknown format ${String(unreachable)}`);
    }
  }
}
