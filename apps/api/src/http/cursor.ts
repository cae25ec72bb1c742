import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { AppError } from '../errors/app-error.ts';

const badCursor = () =>
  new AppError('validation_failed', 'the cursor is not one this server returned', [
    { path: 'query.cursor', message: 'must be a cursor returned by a previous page' },
  ]);

/** Which listing a cursor belongs to: one route, one tenant, one identity, one set of filters. */
export interface CursorScope {
  route: string;
  tenantId: string;
  identityId: string;
  /** The filters of the query (never the limit, which may change from page to page, nor the cursor). */
  filters: Record<string, string | number | undefined>;
}

function scopeBytes(scope: CursorScope): Buffer {
  const filters = Object.keys(scope.filters)
    .sort()
    .filter((k) => scope.filters[k] !== undefined)
    .map((k) => [k, scope.filters[k]]);
  return Buffer.from(JSON.stringify(['coffer/cursor/v1', scope.route, scope.tenantId, scope.identityId, filters]));
}

/**
 * Cursors for listings a caller sees only part of. A cursor is sealed with AES-256-GCM under a key derived from
 * the master keyring, its scope as additional data: the caller cannot read where it points (a scan that ran out
 * of budget resumes after a row the caller may not list, and must not learn that row's name), cannot make one
 * that points anywhere else (no probing of the keyspace, no existence oracle), and cannot carry one to another
 * tenant, identity or filter. Anything that does not open is the caller's malformed cursor: 400.
 */
export function cursorCodec(key: Buffer) {
  const codec = {
    seal(scope: CursorScope, position: Record<string, string | number>): string {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      cipher.setAAD(scopeBytes(scope));
      const body = Buffer.concat([cipher.update(JSON.stringify(position)), cipher.final()]);
      return Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64url');
    },

    open<K extends string>(
      scope: CursorScope,
      cursor: string | undefined,
      fields: readonly K[],
    ): Record<K, string> | undefined {
      if (cursor === undefined) return undefined;
      let parsed: Record<string, unknown>;
      try {
        const raw = Buffer.from(cursor, 'base64url');
        if (raw.length < 29) throw badCursor();
        const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12));
        decipher.setAAD(scopeBytes(scope));
        decipher.setAuthTag(raw.subarray(12, 28));
        const text = Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8');
        parsed = JSON.parse(text) as Record<string, unknown>;
      } catch {
        throw badCursor();
      }
      const out = {} as Record<K, string>;
      for (const f of fields) {
        const v = parsed[f];
        if (typeof v !== 'string' && typeof v !== 'number') throw badCursor();
        out[f] = String(v);
      }
      return out;
    },

    /** "Before this chain position": a positive safe integer, as SQL takes it. */
    openSeq(scope: CursorScope, cursor: string | undefined): number | undefined {
      const position = codec.open(scope, cursor, ['s'] as const);
      if (position === undefined) return undefined;
      const seq = Number(position.s);
      if (!Number.isSafeInteger(seq) || seq < 1 || !/^[0-9]+$/.test(position.s)) throw badCursor();
      return seq;
    },
  };
  return codec;
}
export type CursorCodec = ReturnType<typeof cursorCodec>;

/** The purpose the list-cursor key is derived for from the master keyring. */
export const CURSOR_KEY_PURPOSE = 'coffer/list-cursor/v1';

/** Keyset cursors over what the caller may see in full (ids of tenants, identities): base64url JSON. */
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
