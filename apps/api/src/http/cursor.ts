import { AppError } from '../errors/app-error.ts';

/** Opaque keyset cursors: base64url JSON, so their shape can change without breaking clients' code. */
export function encodeCursor(key: Record<string, string | number>): string {
  return Buffer.from(JSON.stringify(key)).toString('base64url');
}

export function decodeCursor<K extends string>(
  cursor: string | undefined,
  fields: readonly K[],
): Record<K, string> | undefined {
  if (cursor === undefined) return undefined;
  try {
    const parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as Record<string, unknown>;
    const out = {} as Record<K, string>;
    for (const f of fields) {
      const v = parsed[f];
      if (typeof v !== 'string' && typeof v !== 'number') throw new Error('bad cursor');
      out[f] = String(v);
    }
    return out;
  } catch {
    throw new AppError('validation_failed', 'the cursor is not one this server returned', [
      { path: 'query.cursor', message: 'must be a cursor returned by a previous page' },
    ]);
  }
}

/**
 * A cursor that is "before this chain position". The position goes to SQL as a bigint, so anything that is not a
 * positive safe integer (`1e400` parses to Infinity) is the caller's malformed cursor, never a database error.
 */
export function decodeSeqCursor(cursor: string | undefined): number | undefined {
  const key = decodeCursor(cursor, ['s'] as const);
  if (key === undefined) return undefined;
  const seq = Number(key.s);
  if (!Number.isSafeInteger(seq) || seq < 1 || !/^[0-9]+$/.test(key.s)) {
    throw new AppError('validation_failed', 'the cursor is not one this server returned', [
      { path: 'query.cursor', message: 'must be a cursor returned by a previous page' },
    ]);
  }
  return seq;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A cursor that is just "after this id". */
export function decodeIdCursor(cursor: string | undefined): string | undefined {
  const key = decodeCursor(cursor, ['id'] as const);
  if (key && !UUID.test(key.id)) {
    throw new AppError('validation_failed', 'the cursor is not one this server returned', [
      { path: 'query.cursor', message: 'must be a cursor returned by a previous page' },
    ]);
  }
  return key?.id;
}

/** Fetch `limit + 1` rows; if the extra one came back there is a next page. */
export function pageOf<T extends { id: string }>(rows: T[], limit: number): { items: T[]; nextCursor: string | null } {
  const items = rows.slice(0, limit);
  const last = items.at(-1);
  return { items, nextCursor: rows.length > limit && last ? encodeCursor({ id: last.id }) : null };
}
