import { createPrivateKey } from 'node:crypto';
import { type FormatVerdict, formatRules, type SecretFormat } from '@coffer/contracts';

/**
 * Value formats, checked on every write and rotation, by the rules the CLI's `coffer check` shares
 * (packages/contracts/src/formats.ts). Custom patterns run inside PostgreSQL (its regex engine and statement
 * timeout bound the cost of a hostile pattern), so they are returned for the caller to check there.
 */
const rules = formatRules({
  readsPrivateKey: (pem) => {
    try {
      createPrivateKey(pem);
      return true;
    } catch {
      return false;
    }
  },
});

/** Checks everything except a custom pattern, which comes back in `pattern` for the database to check. */
export function checkFormat(format: SecretFormat | null, value: string): FormatVerdict & { pattern?: string } {
  if (format === null) return { ok: true };
  if (typeof format === 'string') return rules.builtin(format, value);
  const lengths = rules.lengths(format, value);
  if (!lengths.ok) return lengths;
  return format.pattern !== undefined ? { ok: true, pattern: format.pattern } : lengths;
}
