import { randomInt } from 'node:crypto';
import { escapeIdentifier, escapeLiteral } from 'pg';

/**
 * Statement and username templates of dynamic-credential backends. A statement is parsed once, when the backend is
 * configured: the SQL around each placeholder is lexed (quoted strings, quoted identifiers, dollar quotes and
 * comments), so a placeholder is only ever found where a value can stand on its own, and it is filled there with a
 * value quoted for what it is — an identifier with escapeIdentifier, a literal with escapeLiteral. Whatever a value
 * holds (quotes, semicolons, backslashes, a username template written to break out), it stays one identifier or
 * one literal: the template's author writes the SQL, a value never does.
 */

export const STATEMENT_PLACEHOLDERS = ['name', 'name_literal', 'password', 'expiration'] as const;
export type StatementPlaceholder = (typeof STATEMENT_PLACEHOLDERS)[number];

/** Which placeholders each kind of statement may use: there is no password at renewal or revocation. */
export const PLACEHOLDERS_FOR = {
  creation: new Set<StatementPlaceholder>(['name', 'name_literal', 'password', 'expiration']),
  renew: new Set<StatementPlaceholder>(['name', 'name_literal', 'expiration']),
  revocation: new Set<StatementPlaceholder>(['name', 'name_literal']),
} as const;

export type StatementKind = keyof typeof PLACEHOLDERS_FOR;

type Part = string | { placeholder: StatementPlaceholder };

export interface ParsedStatement {
  readonly parts: readonly Part[];
  readonly uses: ReadonlySet<StatementPlaceholder>;
}

export interface StatementValues {
  name: string;
  /** What `{{password}}` stands for: a SCRAM-SHA-256 verifier, never the password itself. */
  password?: string;
  expiration?: Date;
}

export class TemplateProblem extends Error {}

const IDENT_CHAR = /[A-Za-z0-9_$\u0080-\uffff]/;
const DOLLAR_TAG = /^\$([A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$/;
const PLACEHOLDER = /^\{\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\}\}/;

const list = (names: Iterable<string>) => [...names].map((n) => `{{${n}}}`).join(', ');

/**
 * Splits a statement into SQL and placeholders. Refuses: an unknown placeholder, one this kind of statement cannot
 * use, one inside a quoted string, quoted identifier, dollar-quoted body or comment (Coffer quotes the value itself,
 * so quotes around it would be wrong, and inside a string it would not be a value at all), and unterminated quotes.
 */
export function parseStatement(text: string, kind: StatementKind): ParsedStatement {
  const allowed = PLACEHOLDERS_FOR[kind];
  const parts: Part[] = [];
  const uses = new Set<StatementPlaceholder>();
  let sql = '';
  let i = 0;
  const quoted = (what: string) =>
    new TemplateProblem(
      `a placeholder inside ${what}: write it bare, e.g. CREATE ROLE {{name}} … PASSWORD {{password}}; Coffer quotes the value`,
    );
  while (i < text.length) {
    const c = text[i] as string;
    const next = text[i + 1];
    if (c === '{' && next === '{') {
      const m = PLACEHOLDER.exec(text.slice(i));
      if (!m) throw new TemplateProblem('"{{" that does not start a placeholder such as {{name}}');
      const name = m[1] as string;
      if (!(STATEMENT_PLACEHOLDERS as readonly string[]).includes(name)) {
        throw new TemplateProblem(`unknown placeholder {{${name}}}: the placeholders are ${list(allowed)}`);
      }
      if (!allowed.has(name as StatementPlaceholder)) {
        throw new TemplateProblem(`{{${name}}} cannot be used in ${kind} statements (only ${list(allowed)})`);
      }
      if (sql) parts.push(sql);
      sql = '';
      parts.push({ placeholder: name as StatementPlaceholder });
      uses.add(name as StatementPlaceholder);
      i += m[0].length;
      continue;
    }
    // Everything below copies SQL through, skipping over the constructs a placeholder may not appear in.
    let end = i + 1;
    if (c === "'") {
      const escapes = i > 0 && /[eE]/.test(text[i - 1] as string) && !IDENT_CHAR.test(text[i - 2] ?? ' ');
      end = closeQuote(text, i, "'", escapes);
      if (end < 0) throw new TemplateProblem('an unterminated quoted string');
      if (text.slice(i, end).includes('{{')) throw quoted('a quoted string');
    } else if (c === '"') {
      end = closeQuote(text, i, '"', false);
      if (end < 0) throw new TemplateProblem('an unterminated quoted identifier');
      if (text.slice(i, end).includes('{{')) throw quoted('a quoted identifier');
    } else if (c === '-' && next === '-') {
      const nl = text.indexOf('\n', i);
      end = nl < 0 ? text.length : nl;
      if (text.slice(i, end).includes('{{')) throw quoted('a comment');
    } else if (c === '/' && next === '*') {
      end = closeBlockComment(text, i);
      if (end < 0) throw new TemplateProblem('an unterminated /* comment');
      if (text.slice(i, end).includes('{{')) throw quoted('a comment');
    } else if (c === '$' && !IDENT_CHAR.test(text[i - 1] ?? ' ')) {
      const tag = DOLLAR_TAG.exec(text.slice(i));
      if (tag) {
        const close = text.indexOf(tag[0], i + tag[0].length);
        if (close < 0) throw new TemplateProblem(`an unterminated ${tag[0]} quoted body`);
        end = close + tag[0].length;
        if (text.slice(i, end).includes('{{')) throw quoted('a dollar-quoted body');
      }
    }
    sql += text.slice(i, end);
    i = end;
  }
  if (sql) parts.push(sql);
  return { parts, uses };
}

/** Index just past the closing quote, or -1. A doubled quote is part of the text; with `escapes`, so is `\'`. */
function closeQuote(text: string, start: number, q: string, escapes: boolean): number {
  for (let j = start + 1; j < text.length; j++) {
    const ch = text[j];
    if (escapes && ch === '\\') {
      j++;
    } else if (ch === q) {
      if (text[j + 1] === q) j++;
      else return j + 1;
    }
  }
  return -1;
}

/** PostgreSQL block comments nest. */
function closeBlockComment(text: string, start: number): number {
  let depth = 0;
  for (let j = start; j < text.length - 1; j++) {
    if (text[j] === '/' && text[j + 1] === '*') {
      depth++;
      j++;
    } else if (text[j] === '*' && text[j + 1] === '/') {
      depth--;
      j++;
      if (depth === 0) return j + 1;
    }
  }
  return -1;
}

export function renderStatement(s: ParsedStatement, v: StatementValues): string {
  return s.parts
    .map((p) => {
      if (typeof p === 'string') return p;
      switch (p.placeholder) {
        case 'name':
          return escapeIdentifier(v.name);
        case 'name_literal':
          return escapeLiteral(v.name);
        case 'password':
          if (v.password === undefined) throw new Error('no password to fill in');
          return escapeLiteral(v.password);
        case 'expiration':
          if (v.expiration === undefined) throw new Error('no expiration to fill in');
          return escapeLiteral(v.expiration.toISOString());
      }
      throw new Error('unreachable');
    })
    .join('');
}

/** Parses every statement of a list, naming the first problem by its index (for the 400's details). */
export function parseStatements(
  texts: readonly string[],
  kind: StatementKind,
  field: string,
): { ok: true; statements: ParsedStatement[] } | { ok: false; path: string; message: string } {
  const statements: ParsedStatement[] = [];
  for (const [i, text] of texts.entries()) {
    try {
      statements.push(parseStatement(text, kind));
    } catch (err) {
      if (!(err instanceof TemplateProblem)) throw err;
      return { ok: false, path: `body.${field}.${i}`, message: err.message };
    }
  }
  return { ok: true, statements };
}

// ---- usernames -------------------------------------------------------------------------------------------------

export const DEFAULT_USERNAME_TEMPLATE = 'v_{{backend}}_{{identity}}_{{random}}';
export const USERNAME_PLACEHOLDERS = ['backend', 'identity', 'random', 'unix_time'] as const;
type UsernamePlaceholder = (typeof USERNAME_PLACEHOLDERS)[number];

/** PostgreSQL keeps 63 bytes of a name (NAMEDATALEN - 1) and silently cuts the rest: a role must fit whole. */
export const MAX_ROLE_NAME_BYTES = 63;
const CLIP_BYTES = 16;
const RANDOM_LENGTH = 12;
const MAX_BYTES: Record<UsernamePlaceholder, number> = {
  backend: CLIP_BYTES,
  identity: CLIP_BYTES,
  random: RANDOM_LENGTH,
  unix_time: 10,
};
const RANDOM_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

export interface UsernameTemplate {
  readonly parts: readonly (string | { placeholder: UsernamePlaceholder })[];
}

/** At most `bytes` bytes of UTF-8, never cutting a character in two. */
export function clipUtf8(s: string, bytes: number): string {
  let out = '';
  let used = 0;
  for (const ch of s) {
    const n = Buffer.byteLength(ch);
    if (used + n > bytes) break;
    out += ch;
    used += n;
  }
  return out;
}

export function parseUsernameTemplate(text: string): UsernameTemplate {
  const parts: UsernameTemplate['parts'][number][] = [];
  let bytes = 0;
  let random = false;
  let rest = text;
  while (rest.length > 0) {
    const open = rest.indexOf('{{');
    const literal = open < 0 ? rest : rest.slice(0, open);
    if (literal) {
      // Control characters have no business in a role name (and would make logs ambiguous).
      if (/\p{Cc}/u.test(literal)) throw new TemplateProblem('control characters are not allowed in a username');
      parts.push(literal);
      bytes += Buffer.byteLength(literal);
    }
    if (open < 0) break;
    const m = PLACEHOLDER.exec(rest.slice(open));
    if (!m) throw new TemplateProblem('"{{" that does not start a placeholder such as {{random}}');
    const name = m[1] as string;
    if (!(USERNAME_PLACEHOLDERS as readonly string[]).includes(name)) {
      throw new TemplateProblem(`unknown placeholder {{${name}}}: the placeholders are ${list(USERNAME_PLACEHOLDERS)}`);
    }
    parts.push({ placeholder: name as UsernamePlaceholder });
    bytes += MAX_BYTES[name as UsernamePlaceholder];
    random ||= name === 'random';
    rest = rest.slice(open + m[0].length);
  }
  if (!random) throw new TemplateProblem('a username template must contain {{random}}, so that no two roles collide');
  const first = parts[0];
  if (typeof first !== 'string') {
    throw new TemplateProblem('a username template must begin with literal text, e.g. v_{{backend}}_{{random}}');
  }
  if (first.startsWith('pg_')) throw new TemplateProblem('role names beginning with pg_ are reserved by PostgreSQL');
  if (bytes > MAX_ROLE_NAME_BYTES) {
    throw new TemplateProblem(
      `the username can reach ${bytes} bytes (at most ${MAX_ROLE_NAME_BYTES}: {{backend}} and {{identity}} take up to ${CLIP_BYTES}, {{random}} ${RANDOM_LENGTH}, {{unix_time}} 10)`,
    );
  }
  return { parts };
}

export function renderUsername(t: UsernameTemplate, v: { backend: string; identity: string; now: Date }): string {
  return t.parts
    .map((p) => {
      if (typeof p === 'string') return p;
      switch (p.placeholder) {
        case 'backend':
          return clipUtf8(v.backend, CLIP_BYTES);
        case 'identity':
          return clipUtf8(v.identity, CLIP_BYTES);
        case 'random':
          return Array.from({ length: RANDOM_LENGTH }, () => RANDOM_ALPHABET[randomInt(RANDOM_ALPHABET.length)]).join(
            '',
          );
        case 'unix_time':
          return String(Math.floor(v.now.getTime() / 1000));
      }
      throw new Error('unreachable');
    })
    .join('');
}
