import { createPrivateKey } from 'node:crypto';
import type { BuiltinFormat, SecretFormat } from '@coffer/contracts';

/**
 * The value formats, checked on the client by `coffer check`. The rules are the server's (apps/api/src/secrets/
 * formats.ts); test/cli/formats.test.ts runs both over the same values so they cannot drift apart. The one
 * difference: the server runs a custom `pattern` in PostgreSQL (POSIX ARE), the CLI as a JavaScript RegExp, which
 * agree on the usual anchored patterns (classes, quantifiers, alternation) but not on every escape.
 */
export type FormatVerdict = { ok: true } | { ok: false; rule: string };

const OK: FormatVerdict = { ok: true };
const fail = (rule: string): FormatVerdict => ({ ok: false, rule });

function parsesAsUrl(value: string, protocols: readonly string[]): boolean {
  try {
    const u = new URL(value);
    return protocols.includes(u.protocol) && u.hostname.length > 0;
  } catch {
    return false;
  }
}

const BUILTIN: Record<BuiltinFormat, (v: string) => FormatVerdict> = {
  'stripe-secret-key': (v) =>
    /^(sk|rk)_(test|live)_[A-Za-z0-9]{16,247}$/.test(v)
      ? OK
      : fail('stripe-secret-key: must be sk_test_… or sk_live_… (or rk_…) followed by at least 16 letters or digits'),
  'stripe-webhook-secret': (v) =>
    /^whsec_[A-Za-z0-9+/=]{16,}$/.test(v)
      ? OK
      : fail('stripe-webhook-secret: must be whsec_ followed by at least 16 characters'),
  url: (v) => (parsesAsUrl(v, ['http:', 'https:']) ? OK : fail('url: must be an absolute http(s) URL with a host')),
  'postgres-url': (v) =>
    parsesAsUrl(v, ['postgres:', 'postgresql:'])
      ? OK
      : fail('postgres-url: must be postgres://user:password@host[:port]/database'),
  'pem-private-key': (v) => {
    const m =
      /^-----BEGIN ((?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY)-----\r?\n[\s\S]+?\r?\n-----END \1-----\s*$/.exec(
        `${v.trim()}\n`,
      );
    if (!m)
      return fail(
        'pem-private-key: must be one PEM block, -----BEGIN … PRIVATE KEY----- … -----END … PRIVATE KEY-----',
      );
    if (m[1] === 'ENCRYPTED PRIVATE KEY' || m[1] === 'OPENSSH PRIVATE KEY') return OK;
    try {
      createPrivateKey(v);
      return OK;
    } catch {
      return fail('pem-private-key: the PEM block is not a readable private key');
    }
  },
  uuid: (v) =>
    /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(v) ? OK : fail('uuid: must be a UUID'),
  base64: (v) =>
    v.length > 0 && v.length % 4 === 0 && /^[A-Za-z0-9+/]*={0,2}$/.test(v)
      ? OK
      : fail('base64: must be standard padded base64'),
  hex: (v) => (/^(?:[0-9a-fA-F]{2})+$/.test(v) ? OK : fail('hex: must be an even number of hexadecimal digits')),
  json: (v) => {
    try {
      JSON.parse(v);
      return OK;
    } catch {
      return fail('json: must be valid JSON');
    }
  },
};

export function checkFormat(format: SecretFormat | null, value: string): FormatVerdict {
  if (format === null) return OK;
  if (typeof format === 'string') return BUILTIN[format](value);
  const length = [...value].length;
  if (format.minLength !== undefined && length < format.minLength)
    return fail(`minLength: must be at least ${format.minLength} characters`);
  if (format.maxLength !== undefined && length > format.maxLength)
    return fail(`maxLength: must be at most ${format.maxLength} characters`);
  if (format.pattern !== undefined) {
    let re: RegExp;
    try {
      re = new RegExp(format.pattern, 'u');
    } catch {
      return fail('pattern: the pattern cannot be checked here (not a JavaScript regular expression)');
    }
    if (!re.test(value)) return fail('pattern: must match the format pattern');
  }
  return OK;
}

/** A human name for a format: the built-in name or the custom rules. */
export function describeFormat(format: SecretFormat | null | undefined): string {
  if (format === null || format === undefined) return '';
  if (typeof format === 'string') return format;
  return [
    format.pattern !== undefined ? `pattern ${format.pattern}` : null,
    format.minLength !== undefined ? `min ${format.minLength}` : null,
    format.maxLength !== undefined ? `max ${format.maxLength}` : null,
  ]
    .filter(Boolean)
    .join(', ');
}
