import { createPrivateKey } from 'node:crypto';
import { type FormatVerdict, formatRules, type SecretFormat } from '@coffer/contracts';

/**
 * The value formats, checked on the client by `coffer check`, by the server's own rules (packages/contracts/src/
 * formats.ts). The one difference: the server runs a custom `pattern` in PostgreSQL (POSIX ARE), the CLI as a
 * JavaScript RegExp, which agree on the usual anchored patterns (classes, quantifiers, alternation) but not on
 * every escape.
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

export function checkFormat(format: SecretFormat | null, value: string): FormatVerdict {
  if (format === null) return { ok: true };
  if (typeof format === 'string') return rules.builtin(format, value);
  const lengths = rules.lengths(format, value);
  if (!lengths.ok || format.pattern === undefined) return lengths;
  let re: RegExp;
  try {
    re = new RegExp(format.pattern, 'u');
  } catch {
    return { ok: false, rule: 'pattern: the pattern cannot be checked here (not a JavaScript regular expression)' };
  }
  return re.test(value) ? { ok: true } : { ok: false, rule: 'pattern: must match the format pattern' };
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
