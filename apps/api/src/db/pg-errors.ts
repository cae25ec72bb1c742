import { DrizzleQueryError } from 'drizzle-orm';

/** Walks an error's `cause` chain (drizzle wraps driver errors) for a PostgreSQL or Node socket error. */
export function pgErrorCode(err: unknown): string | undefined {
  let current: unknown = err;
  for (let depth = 0; current && depth < 5; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && code.length > 0) return code;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

export function pgConstraint(err: unknown): string | undefined {
  let current: unknown = err;
  for (let depth = 0; current && depth < 5; depth++) {
    const constraint = (current as { constraint?: unknown }).constraint;
    if (typeof constraint === 'string') return constraint;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EHOSTUNREACH',
  '57P01', // admin_shutdown (pg_terminate_backend, server stopping)
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now (starting up, shutting down)
  '57014', // query_canceled (statement_timeout)
  '53300', // too_many_connections
  '40001', // serialization_failure
  '40P01', // deadlock_detected
  '55P03', // lock_not_available
]);

/** True for failures that say "the database is not answering right now" rather than "this request is wrong". */
export function isDatabaseUnavailable(err: unknown): boolean {
  const code = pgErrorCode(err);
  if (code && (UNAVAILABLE_CODES.has(code) || code.startsWith('08'))) return true;
  const message = err instanceof Error ? err.message : '';
  return (
    /timeout exceeded when trying to connect|Connection terminated|connection timeout|Client has encountered a connection error|Cannot use a pool after calling end/i.test(
      message,
    ) ||
    (err instanceof Error && err.cause !== undefined && isDatabaseUnavailable(err.cause))
  );
}

/**
 * drizzle's query errors carry the bind parameters in their message and fields, and ours include secret values
 * and data keys. Nothing that leaves a transaction keeps them: the SQL text (first line) and the driver's error
 * (code, constraint) survive, the parameters do not.
 */
export class QueryError extends Error {
  readonly code: string | undefined;
  constructor(
    query: string,
    override readonly cause: unknown,
  ) {
    super(`query failed: ${query.split('\n')[0]?.slice(0, 200) ?? ''}`);
    this.name = 'QueryError';
    this.code = (cause as { code?: string } | undefined)?.code;
  }
}

export function scrubQueryError(err: unknown): unknown {
  return err instanceof DrizzleQueryError ? new QueryError(err.query, err.cause) : err;
}
