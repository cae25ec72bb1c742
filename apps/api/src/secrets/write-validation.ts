import type { ErrorIssue, SecretFormat } from '@coffer/contracts';
import { AppError } from '../errors/app-error.ts';

/** A value to be written, and where the request carried it (for the error's details). */
export interface ValueInput {
  value: string;
  where: string;
}

/** A format the request sets, and where it carried it. */
export interface FormatInput {
  format: SecretFormat | null | undefined;
  where: string;
}

export interface WriteRequest {
  values?: readonly ValueInput[];
  formats?: readonly FormatInput[];
  expiresAt?: string | null | undefined;
}

/** A custom pattern the request sets: PostgreSQL compiles it, inside the write's transaction. */
export interface NewPattern {
  pattern: string;
  where: string;
}

/**
 * Everything about a write that can be decided without the database, decided before any I/O: each value's size,
 * the expiry, and which new custom patterns the transaction must compile. Throws the AppError the caller sees.
 * Whether a value satisfies its format is decided in the transaction, because the effective format may be the
 * stored one and a compare-and-set conflict is reported before it.
 */
export function validateWrite(req: WriteRequest, maxValueBytes: number, now = Date.now()): NewPattern[] {
  for (const { value, where } of req.values ?? []) {
    const bytes = Buffer.byteLength(value, 'utf8');
    if (bytes > maxValueBytes) {
      throw new AppError('payload_too_large', `the value is ${bytes} bytes; the limit is ${maxValueBytes}`, [
        { path: where, message: `must be at most ${maxValueBytes} bytes` },
      ]);
    }
  }
  if (req.expiresAt && Date.parse(req.expiresAt) <= now) {
    throw new AppError('validation_failed', 'expiresAt must be in the future', [
      { path: 'body.expiresAt', message: 'must be in the future' },
    ]);
  }
  const patterns: NewPattern[] = [];
  for (const { format, where } of req.formats ?? []) {
    if (format && typeof format === 'object' && format.pattern !== undefined) {
      patterns.push({ pattern: format.pattern, where: `${where}.pattern` });
    }
  }
  return patterns;
}

/** The error for a custom pattern PostgreSQL could not compile (SQLSTATE 2201B). */
export function invalidPattern(where: string): AppError {
  const issue: ErrorIssue = { path: where, message: 'must be a valid PostgreSQL (POSIX ARE) regular expression' };
  return new AppError('validation_failed', 'the format pattern is not a valid regular expression', [issue]);
}
