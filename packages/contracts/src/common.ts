import { z } from 'zod';

export const Uuid = z.uuid();
/** PostgreSQL `integer`: versions are stored in one, so a larger number must be refused before it reaches SQL. */
export const INT4_MAX = 2_147_483_647;

/**
 * The instants a request may name. RFC 3339 allows year 0000 and offsets that carry 9999-12-31 into year 10000;
 * PostgreSQL and `Date#toISOString` do not agree with it there, so both ends are bounded here, in UTC.
 */
export const EARLIEST_TIMESTAMP = '1970-01-01T00:00:00Z';
export const LATEST_TIMESTAMP = '9999-12-31T23:59:59.999Z';
const earliest = Date.parse(EARLIEST_TIMESTAMP);
const latest = Date.parse(LATEST_TIMESTAMP);

export const Timestamp = z.iso
  .datetime({ offset: true })
  .refine((v) => {
    const at = Date.parse(v);
    return at >= earliest && at <= latest;
  }, 'must be between 1970-01-01 and 9999-12-31 (UTC)')
  .describe('RFC 3339 timestamp, from 1970-01-01 to 9999-12-31 (UTC)');

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Text PostgreSQL stores unchanged: no NUL (it cannot hold one) and no unpaired surrogate (UTF-8 cannot). */
export const storableText = (s: z.ZodString) =>
  s
    .refine((v) => !v.includes('\u0000'), 'must not contain a NUL character')
    .refine((v) => !LONE_SURROGATE.test(v), 'must be valid Unicode (no unpaired surrogate)');

/** Opaque keyset-pagination cursor. Clients pass it back unchanged. */
export const Cursor = z
  .string()
  .max(512)
  .regex(/^[A-Za-z0-9_-]+$/, 'must be a cursor returned by a previous page');

export const PageQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  cursor: Cursor.optional(),
});

export function page<T extends z.ZodType>(item: T) {
  return z.object({
    items: z.array(item),
    nextCursor: Cursor.nullable().describe('Pass as `cursor` to get the next page; null on the last page'),
  });
}

export const IdParams = z.object({ id: Uuid });
