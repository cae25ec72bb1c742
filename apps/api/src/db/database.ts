import { sql } from 'drizzle-orm';
import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { unavailable } from '../errors/app-error.ts';
import { namingClient, StatementNames } from './named-statements.ts';
import { pgErrorCode, scrubQueryError } from './pg-errors.ts';
import * as schema from './schema.ts';

export type Orm = NodePgDatabase<typeof schema>;
export type Tx = Parameters<Parameters<Orm['transaction']>[0]>[0];

export interface PoolOptions {
  url: string;
  max: number;
  acquireTimeoutMs: number;
  statementTimeoutMs: number;
  /** Row-lock waits give up after this (SQLSTATE 55P03, answered as 503); defaults to the acquire timeout. */
  lockTimeoutMs?: number;
  applicationName: string;
  onError: (err: Error) => void;
  /** Prepare statements (see namingClient); off for PgBouncer before 1.21 in transaction mode. */
  preparedStatements?: boolean;
}

/** One set of names for the process: a statement's name depends only on its text. */
const statementNames = new StatementNames();

export function createPool(o: PoolOptions): pg.Pool {
  const pool = new pg.Pool({
    connectionString: o.url,
    max: o.max,
    // pg-pool applies this both to opening a connection and to waiting for a free one.
    connectionTimeoutMillis: o.acquireTimeoutMs,
    idleTimeoutMillis: 30_000,
    statement_timeout: o.statementTimeoutMs,
    lock_timeout: o.lockTimeoutMs ?? o.acquireTimeoutMs,
    idle_in_transaction_session_timeout: Math.max(o.statementTimeoutMs * 2, 10_000),
    application_name: o.applicationName,
    keepAlive: true,
    Client: namingClient(o.preparedStatements === false ? null : statementNames),
  });
  // A client losing its connection (database restart, pg_terminate_backend) must not crash the process: the pool
  // handles idle clients, and this listener the ones checked out by a transaction (pg emits 'error' on them too;
  // the query in flight is rejected and answered as 503).
  pool.on('error', o.onError);
  pool.on('connect', (client) => {
    client.on('error', o.onError);
  });
  return pool;
}

/**
 * The API's handle on PostgreSQL, connected as the restricted query role. Every tenant-owned row is reached
 * through `withTenant`, which sets `app.tenant_id` for one transaction; RLS does the rest.
 */
export class Database {
  readonly orm: Orm;
  /** Which tenant each open transaction is scoped to, so a query handed a transaction can check it. */
  private readonly scopes = new WeakMap<object, string>();

  constructor(readonly pool: pg.Pool) {
    this.orm = drizzle(pool, { schema });
  }

  /**
   * A hot statement under a name of its own, which labels it in traces and pg_prepared_statements. Whether it is
   * prepared is the pool's decision (createPool's `preparedStatements`), as for every other statement.
   */
  statement(name: string, text: string, values: unknown[]): pg.QueryConfig {
    return { name, text, values };
  }

  async withTenant<T>(tenantId: string, fn: (tx: Tx) => Promise<T>): Promise<T> {
    try {
      return await this.orm.transaction(async (tx) => {
        await tx.execute(sql`select set_config('app.tenant_id', ${tenantId}, true)`);
        this.scopes.set(tx, tenantId);
        return fn(tx);
      });
    } catch (err) {
      // The deferred trigger that chains the transaction's audit events refused at COMMIT: nothing was changed.
      if (pgErrorCode(err) === 'CF002') {
        throw Object.assign(unavailable('the audit log is unavailable, so the change was not made'), {
          cause: scrubQueryError(err),
        });
      }
      throw scrubQueryError(err);
    }
  }

  /** Runs `fn` in the given transaction (which must be scoped to `tenantId`) or in a new one. */
  inTenant<T>(tenantId: string, tx: Tx | undefined, fn: (tx: Tx) => Promise<T>): Promise<T> {
    if (!tx) return this.withTenant(tenantId, fn);
    const scoped = this.scopes.get(tx);
    if (scoped !== tenantId) {
      return Promise.reject(new Error(`transaction scoped to ${scoped ?? 'no tenant'} used for tenant ${tenantId}`));
    }
    return fn(tx);
  }

  /** Moves an open transaction to another tenant (tenant creation writes the new tenant's first rows). */
  async rescope(tx: Tx, tenantId: string): Promise<void> {
    await tx.execute(sql`select set_config('app.tenant_id', ${tenantId}, true)`);
    this.scopes.set(tx, tenantId);
  }

  /**
   * Ends the pool and waits until every connection has closed. pool.end() resolves once it has asked each connection
   * to close, not once each has; a database stopped right after (the embedded one) would terminate those still
   * closing, and each would be reported as a lost connection.
   */
  async close(): Promise<void> {
    const open = this.pool.totalCount;
    let timer: NodeJS.Timeout | undefined;
    const closed = new Promise<void>((resolve) => {
      if (open === 0) return resolve();
      let removed = 0;
      const onRemove = () => {
        if (++removed < open) return;
        this.pool.off('remove', onRemove);
        resolve();
      };
      this.pool.on('remove', onRemove);
      // A connection whose server is already gone never confirms: give up waiting rather than hang a shutdown.
      timer = setTimeout(resolve, 5000);
      timer.unref();
    });
    await this.pool.end();
    await closed;
    clearTimeout(timer);
  }
}
