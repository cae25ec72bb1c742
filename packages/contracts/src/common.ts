import { z } from 'zod';

export const Uuid = z.uuid();
export const Timestamp = z.iso.datetime({ offset: true }).describe('RFC 3339 timestamp');

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
