import type { BuiltinFormat, CustomFormat } from './secrets.ts';

/** Whether a value satisfies its format; a failure names the rule, never the value. */
export type FormatVerdict = { ok: true } | { ok: false; rule: string };

const OK: FormatVerdict = { ok: true };
const fail = (rule: string): FormatVerdict => ({ ok: false, rule });

/** `protocols` null: every scheme is allowed, as long as the URL names a host (`redis://cache:6379`, `amqp://mq`, not `mailto:`). */
function parsesAsUrl(value: string, protocols: readonly string[] | null): boolean {
  try {
    const u = new URL(value);
    return (protocols === null || protocols.includes(u.protocol)) && u.hostname.length > 0;
  } catch {
    return false;
  }
}

/**
 * The rules of the built-in formats and of a custom format's lengths: one copy, used by the server on every write
 * and rotation and by the CLI's `coffer check`, so the two cannot drift apart. Reading a PEM private key needs a
 * crypto library, which the caller passes (node:crypto's createPrivateKey on both sides). A custom `pattern` is
 * not checked here: the server runs it in PostgreSQL, the CLI as a JavaScript RegExp.
 */
export function formatRules(o: { readsPrivateKey: (pem: string) => boolean }) {
  const builtin: Record<BuiltinFormat, (v: string) => FormatVerdict> = {
    'stripe-secret-key': (v) =>
      /^(sk|rk)_(test|live)_[A-Za-z0-9]{16,247}$/.test(v)
        ? OK
        : fail('stripe-secret-key: must be sk_test_… or sk_live_… (or rk_…) followed by at least 16 letters or digits'),
    'stripe-webhook-secret': (v) =>
      /^whsec_[A-Za-z0-9+/=]{16,}$/.test(v)
        ? OK
        : fail('stripe-webhook-secret: must be whsec_ followed by at least 16 characters'),
    // Secrets hold redis://, amqp://, mongodb+srv:// … URLs as often as http(s) ones: every scheme with a host.
    url: (v) => (parsesAsUrl(v, null) ? OK : fail('url: must be an absolute URL with a scheme and a host')),
    'postgres-url': (v) =>
      parsesAsUrl(v, ['postgres:', 'postgresql:'])
        ? OK
        : fail('postgres-url: must be postgres://user:password@host[:port]/database'),
    'pem-private-key': (v) => {
      const m =
        /^-----BEGIN ((?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY)-----\r?\n(?:(?!-----)[\s\S])+?\r?\n-----END \1-----\s*$/.exec(
          `${v.trim()}\n`,
        );
      if (!m) {
        return fail(
          'pem-private-key: must be one PEM block, -----BEGIN … PRIVATE KEY----- … -----END … PRIVATE KEY-----',
        );
      }
      if (m[1] === 'ENCRYPTED PRIVATE KEY' || m[1] === 'OPENSSH PRIVATE KEY') return OK;
      return o.readsPrivateKey(v) ? OK : fail('pem-private-key: the PEM block is not a readable private key');
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
  return {
    builtin: (format: BuiltinFormat, value: string): FormatVerdict => builtin[format](value),
    /** Length in characters (code points), as the format's limits are stated. */
    lengths: (format: CustomFormat, value: string): FormatVerdict => {
      const length = [...value].length;
      if (format.minLength !== undefined && length < format.minLength) {
        return fail(`minLength: must be at least ${format.minLength} characters`);
      }
      if (format.maxLength !== undefined && length > format.maxLength) {
        return fail(`maxLength: must be at most ${format.maxLength} characters`);
      }
      return OK;
    },
  };
}
