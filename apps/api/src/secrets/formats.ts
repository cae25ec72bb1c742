import { createPrivateKey } from 'node:crypto';
import type { BuiltinFormat, SecretFormat } from '@coffer/contracts';

/**
 * Value formats, checked on every write and rotation. A failure names the rule, never the value.
 * Custom patterns run inside PostgreSQL (its regex engine and statement timeout bound the cost of a hostile
 * pattern), so this module only decides the built-in rules and the length limits.
 */

export interface FormatResult {
  ok: boolean;
  rule?: string;
}

const fail = (rule: string): FormatResult => ({ ok: false, rule });
const OK: FormatResult = { ok: true };

function parsesAsUrl(value: string, protocols: readonly string[]): boolean {
  try {
    const u = new URL(value);
    return protocols.includes(u.protocol) && u.hostname.length > 0;
  } catch {
    return false;
  }
}

const BUILTIN: Record<BuiltinFormat, (v: string) => FormatResult> = {
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
      /^-----BEGIN ((?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY)-----\r?\n(?:(?!-----)[\s\S])+?\r?\n-----END \1-----\s*$/.exec(
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

/** Checks everything except a custom pattern; `needsPatternCheck` says whether the database must check one. */
export function checkFormat(format: SecretFormat | null, value: string): FormatResult & { pattern?: string } {
  if (format === null) return OK;
  if (typeof format === 'string') return BUILTIN[format](value);
  const length = [...value].length;
  if (format.minLength !== undefined && length < format.minLength) {
    return fail(`minLength: must be at least ${format.minLength} characters`);
  }
  if (format.maxLength !== undefined && length > format.maxLength) {
    return fail(`maxLength: must be at most ${format.maxLength} characters`);
  }
  return format.pattern !== undefined ? { ok: true, pattern: format.pattern } : OK;
}
