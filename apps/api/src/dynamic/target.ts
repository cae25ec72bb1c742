import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import pg from 'pg';
import { isPrivateAddress, type Resolve, systemResolve } from '../webhooks/url-policy.ts';
import { type ParsedStatement, renderStatement, type StatementKind, type StatementValues } from './templates.ts';

/**
 * Connections to the databases dynamic credentials are made in ("targets"), as the admin role whose URL a Coffer
 * secret holds. A target is a host a tenant admin chose, so it is checked like a webhook URL: unless private targets
 * are allowed, it must resolve only to public addresses, and the address that was checked is the one connected to
 * (no second lookup for a rebinding DNS answer to change). Nothing that comes from the URL — its password least of
 * all — goes into an error message, a log line or an audit row.
 */

export interface TargetPolicy {
  /** Private, loopback and link-local addresses are allowed (a database inside the network). */
  allowPrivate: boolean;
  /** Connections without TLS to a host other than loopback are allowed. */
  allowPlaintext: boolean;
}

type SslMode = 'disable' | 'require' | 'no-verify' | 'verify-ca' | 'verify-full';
const SSL_MODES = new Set<string>(['disable', 'require', 'no-verify', 'verify-ca', 'verify-full']);

interface TargetAddress {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  sslmode: SslMode;
}

/** The backend is set up wrong (its URL, its admin role, its statements): answered 422, retried by the job. */
export class TargetMisconfigured extends Error {}
/** The target did not answer: answered 503, retried with backoff by the job. */
export class TargetUnavailable extends Error {}
/** A backend's statement failed in the target. Only its SQLSTATE and index are kept from a creation statement. */
export class TargetStatementFailed extends Error {
  constructor(
    readonly kind: StatementKind,
    readonly index: number,
    readonly sqlstate: string | null,
    detail: string,
  ) {
    super(detail);
  }
}

const problem = (m: string) => new TargetMisconfigured(m);

/** Creations that failed before their COMMIT was sent: the target rolled them back, or never saw them. */
const madeNothing = new WeakSet<Error>();

/** The creation that threw `err` certainly made nothing in the target (else it may have made the role). */
export const nothingWasMade = (err: unknown): boolean => err instanceof Error && madeNothing.has(err);

function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** Parses a connection URL without echoing any part of it into a message. */
export function parseTargetUrl(raw: string, policy: TargetPolicy): TargetAddress {
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    throw problem('the connection secret does not hold a connection URL (postgres://user:password@host/database)');
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw problem('the connection secret must hold a postgres:// or postgresql:// URL');
  }
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (!host) throw problem('the connection URL names no host (unix sockets are not supported)');
  if (!url.username) throw problem('the connection URL names no user');
  for (const key of url.searchParams.keys()) {
    if (key !== 'sslmode') throw problem(`the connection URL may carry only sslmode, not ${key.slice(0, 32)}`);
  }
  const sslmode = url.searchParams.get('sslmode') ?? 'disable';
  if (!SSL_MODES.has(sslmode)) {
    throw problem('sslmode must be disable, require, no-verify, verify-ca or verify-full');
  }
  if (sslmode === 'disable' && !policy.allowPlaintext && !isLoopbackHost(host)) {
    throw problem(
      'the connection URL would connect without TLS: add ?sslmode=verify-full (or require), or set COFFER_DYNAMIC_ALLOW_PLAINTEXT=true',
    );
  }
  const decoded = (part: string, what: string) => {
    try {
      return decodeURIComponent(part);
    } catch {
      throw problem(`the connection URL's ${what} is not correctly percent-encoded`);
    }
  };
  return {
    host,
    port: url.port ? Number(url.port) : 5432,
    user: decoded(url.username, 'user'),
    password: decoded(url.password, 'password'),
    database: decoded(url.pathname.replace(/^\//, ''), 'database') || 'postgres',
    sslmode: sslmode as SslMode,
  };
}

/** The address to connect to, checked against the address policy. */
async function resolveTarget(host: string, policy: TargetPolicy, resolve: Resolve): Promise<string> {
  if (!policy.allowPrivate && (host === 'localhost' || host.endsWith('.localhost'))) {
    throw problem('the database host must not be this machine (set COFFER_DYNAMIC_ALLOW_PRIVATE=true to allow it)');
  }
  const addresses = isIP(host) ? [host] : (await resolve(host).catch(() => [])).map((a) => a.address);
  const first = addresses[0];
  if (!first) throw new TargetUnavailable('the database host does not resolve');
  if (!policy.allowPrivate && addresses.some(isPrivateAddress)) {
    throw problem(
      'the database host must not be a private, loopback or link-local address (set COFFER_DYNAMIC_ALLOW_PRIVATE=true for a database inside your network)',
    );
  }
  return first;
}

function sslOptions(a: TargetAddress): pg.ClientConfig['ssl'] {
  // The connection goes to the checked address; the certificate is still checked against the name.
  const servername = isIP(a.host) ? undefined : a.host;
  switch (a.sslmode) {
    case 'disable':
      return false;
    case 'require':
    case 'no-verify':
      return { rejectUnauthorized: false, ...(servername ? { servername } : {}) };
    case 'verify-ca':
      return { rejectUnauthorized: true, checkServerIdentity: () => undefined, ...(servername ? { servername } : {}) };
    case 'verify-full':
      return { rejectUnauthorized: true, ...(servername ? { servername } : {}) };
  }
}

const CONNECTION_CODES = /^(08|57P0|53300|28|3D000|ECONN|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EPIPE|EAI_)/;

function errorCode(err: unknown): string | null {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.length > 0 ? code.slice(0, 32) : null;
}

/** An error from the driver or the target, as something safe to show: its code and a fixed description. */
export function describeTargetError(err: unknown): string {
  if (err instanceof TargetMisconfigured || err instanceof TargetUnavailable) return err.message;
  // Coffer's own answer (a connection secret that fails its integrity check): its message is written to be shown.
  if (err instanceof Error && err.name === 'AppError') return err.message;
  if (err instanceof TargetStatementFailed) {
    const where = err.index >= 0 ? `${err.kind} statement ${err.index + 1} failed` : `${err.kind} failed`;
    return `${where}${err.sqlstate ? ` (SQLSTATE ${err.sqlstate})` : ''}: ${err.message}`.slice(0, 500);
  }
  const code = errorCode(err);
  if (code?.startsWith('28')) return `the database refused the admin login (SQLSTATE ${code})`;
  if (code === '3D000') return 'the database named in the connection URL does not exist';
  if (code) return `the database is unavailable (${code})`;
  const message = err instanceof Error ? err.message : '';
  if (/timeout/i.test(message)) return 'the database did not answer in time';
  return 'the database is unavailable';
}

function isConnectionError(err: unknown): boolean {
  const code = errorCode(err);
  if (code && CONNECTION_CODES.test(code)) return true;
  const message = err instanceof Error ? err.message : '';
  return /timeout|Connection terminated|connection error|ECONNREFUSED|not queryable/i.test(message);
}

/** A driver error as one of ours: unreachable, refused login, or a failed statement of the given kind. */
function classify(err: unknown, kind: StatementKind, index: number, keepMessage: boolean): Error {
  if (err instanceof TargetMisconfigured || err instanceof TargetUnavailable || err instanceof TargetStatementFailed)
    return err;
  const code = errorCode(err);
  if (code?.startsWith('28') || code === '3D000') return problem(describeTargetError(err));
  if (isConnectionError(err)) return new TargetUnavailable(describeTargetError(err));
  const sqlstate = code && /^[0-9A-Z]{5}$/.test(code) ? code : null;
  // A creation statement's message may quote the statement, and so the password's verifier: only its code is kept.
  const message = keepMessage && err instanceof Error ? err.message.slice(0, 300) : 'see its SQLSTATE';
  return new TargetStatementFailed(kind, index, sqlstate, message);
}

export interface AdminCheck {
  superuser: boolean;
  createRole: boolean;
  canSignal: boolean;
  serverVersion: number;
}

/**
 * One pool per connection URL (keyed by its hash, so the URL is never a map key), made for the address resolved
 * and checked when it was made and remade every minute, so a change of DNS answer is seen and checked again.
 */
export class TargetConnections {
  private readonly pools = new Map<string, { pool: pg.Pool; madeAt: number }>();
  private closed = false;

  constructor(
    private readonly policy: TargetPolicy,
    private readonly resolve: Resolve = systemResolve,
    private readonly o: { maxPerTarget?: number; refreshMs?: number; statementTimeoutMs?: number } = {},
  ) {}

  private async pool(raw: string): Promise<pg.Pool> {
    if (this.closed) throw new TargetUnavailable('the service is shutting down');
    const key = createHash('sha256').update(raw).digest('hex');
    const held = this.pools.get(key);
    if (held && Date.now() - held.madeAt < (this.o.refreshMs ?? 60_000)) return held.pool;
    const a = parseTargetUrl(raw, this.policy);
    const address = await resolveTarget(a.host, this.policy, this.resolve);
    const statementTimeout = this.o.statementTimeoutMs ?? 15_000;
    const pool = new pg.Pool({
      host: address,
      port: a.port,
      user: a.user,
      password: a.password,
      database: a.database,
      ssl: sslOptions(a),
      max: this.o.maxPerTarget ?? 4,
      idleTimeoutMillis: 10_000,
      connectionTimeoutMillis: 5_000,
      statement_timeout: statementTimeout,
      query_timeout: statementTimeout + 5_000,
      lock_timeout: 5_000,
      idle_in_transaction_session_timeout: 60_000,
      application_name: 'coffer-dynamic',
      keepAlive: true,
    });
    // An idle connection the target closed (a restart) is the pool's to replace; nothing to report.
    pool.on('error', () => undefined);
    this.pools.set(key, { pool, madeAt: Date.now() });
    if (held) void held.pool.end().catch(() => undefined);
    return pool;
  }

  private async withClient<T>(raw: string, kind: StatementKind, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const pool = await this.pool(raw);
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (err) {
      throw classify(err, kind, -1, false);
    }
    let broken: Error | undefined;
    try {
      return await fn(client);
    } catch (err) {
      if (isConnectionError(err)) broken = err as Error;
      throw err;
    } finally {
      client.release(broken);
    }
  }

  /**
   * Runs `body` in one transaction that holds Coffer's advisory lock on the target database, so that Coffer's role
   * changes in one database run one at a time, whichever replica, backend or tenant makes them: PostgreSQL refuses
   * concurrent GRANT or REVOKE on one object ("tuple concurrently updated") rather than queueing them, and two
   * revokers of one role must not both run its statements. Anything that fails rolls all of it back.
   */
  private async inTransaction(
    c: pg.PoolClient,
    kind: StatementKind,
    body: (run: (sql: string, index: number) => Promise<void>) => Promise<void>,
  ): Promise<void> {
    const keepMessage = kind !== 'creation';
    try {
      await c.query('BEGIN');
      await c.query(
        `select pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('coffer/dynamic/' || current_database(), 0))`,
      );
    } catch (err) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw classify(err, kind, -1, false);
    }
    try {
      await body(async (text, index) => {
        try {
          await c.query(text);
        } catch (err) {
          throw classify(err, kind, index, keepMessage);
        }
      });
      await c.query('COMMIT');
    } catch (err) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw classify(err, kind, -1, keepMessage);
    }
  }

  /** What the admin role may do: checked when a backend is configured. */
  async checkAdmin(raw: string): Promise<AdminCheck> {
    return this.withClient(raw, 'creation', async (c) => {
      try {
        const { rows } = await c.query<{ rolsuper: boolean; rolcreaterole: boolean; signal: boolean; v: number }>(
          `select r.rolsuper, r.rolcreaterole,
             pg_catalog.pg_has_role(current_user, 'pg_signal_backend', 'USAGE') as signal,
             current_setting('server_version_num')::int as v
           from pg_catalog.pg_roles r where r.rolname = current_user`,
        );
        const r = rows[0];
        if (!r) throw problem('the admin role is not in pg_roles');
        return { superuser: r.rolsuper, createRole: r.rolcreaterole, canSignal: r.signal, serverVersion: r.v };
      } catch (err) {
        throw classify(err, 'creation', -1, false);
      }
    });
  }

  /**
   * Makes the role: the creation statements, then a check that they did make a role of that name. A failure before
   * the COMMIT was sent is known to have made nothing (`nothingWasMade`); one during it may have made the role.
   */
  async create(raw: string, statements: readonly ParsedStatement[], values: StatementValues): Promise<void> {
    let committing = false;
    try {
      await this.createRole(raw, statements, values, () => {
        committing = true;
      });
    } catch (err) {
      if (!committing && err instanceof Error) madeNothing.add(err);
      throw err;
    }
  }

  private async createRole(
    raw: string,
    statements: readonly ParsedStatement[],
    values: StatementValues,
    beforeCommit: () => void,
  ): Promise<void> {
    await this.withClient(raw, 'creation', (c) =>
      this.inTransaction(c, 'creation', async (run) => {
        // Creations do not wait for their commit to reach the target's disk, so that the lock is not held through
        // a flush: a creation lost to a crash of the target only leaves a lease whose role does not exist (its
        // login fails, its revocation finds nothing). Revocations always wait: a lost one would bring a role back.
        await c.query('SET LOCAL synchronous_commit TO off');
        for (const [i, s] of statements.entries()) await run(renderStatement(s, values), i);
        const found = await c.query('select 1 from pg_catalog.pg_roles where rolname = $1', [values.name]);
        if (!found.rowCount) {
          throw new TargetStatementFailed(
            'creation',
            -1,
            null,
            'the creation statements did not create the role {{name}}',
          );
        }
        beforeCommit();
      }),
    );
  }

  /** Runs the renew statements; `absent` if the role is not there any more. */
  async renew(
    raw: string,
    statements: readonly ParsedStatement[],
    values: StatementValues,
  ): Promise<'renewed' | 'absent'> {
    return this.withClient(raw, 'renew', async (c) => {
      let absent = false;
      await this.inTransaction(c, 'renew', async (run) => {
        const found = await c.query('select 1 from pg_catalog.pg_roles where rolname = $1', [values.name]);
        if (!found.rowCount) {
          absent = true;
          return;
        }
        for (const [i, s] of statements.entries()) await run(renderStatement(s, values), i);
      });
      return absent ? 'absent' : 'renewed';
    });
  }

  /**
   * Revokes a role, idempotently: a role that is not there is already revoked. Its logins stop first (NOLOGIN,
   * committed on its own, so even a revocation that then fails leaves nobody able to log in with it), then its
   * sessions are ended, then — in one transaction, under the database's lock (see inTransaction), after checking
   * once more that it is there — the revocation statements run and the role is dropped. Two revokers of one role (a
   * worker whose claim lapsed, a crash and a retry) therefore run the statements once between them.
   */
  async revoke(raw: string, statements: readonly ParsedStatement[], name: string): Promise<'dropped' | 'absent'> {
    return this.withClient(raw, 'revocation', async (c) => {
      const exists = async () =>
        ((await c.query('select 1 from pg_catalog.pg_roles where rolname = $1', [name])).rowCount ?? 0) > 0;
      let present = true;
      await this.inTransaction(c, 'revocation', async () => {
        present = await exists();
        if (present) await c.query(`ALTER ROLE ${pg.escapeIdentifier(name)} NOLOGIN`);
      });
      if (!present) return 'absent';
      try {
        await c.query(
          `select pg_catalog.pg_terminate_backend(pid, 5000) from pg_catalog.pg_stat_activity
           where usename = $1 and pid <> pg_catalog.pg_backend_pid()`,
          [name],
        );
      } catch (err) {
        throw classify(err, 'revocation', -1, true);
      }
      let result: 'dropped' | 'absent' = 'dropped';
      await this.inTransaction(c, 'revocation', async (run) => {
        if (!(await exists())) {
          result = 'absent';
          return;
        }
        for (const [i, s] of statements.entries()) await run(renderStatement(s, { name }), i);
        try {
          await c.query(`DROP ROLE IF EXISTS ${pg.escapeIdentifier(name)}`);
        } catch (err) {
          const failed = classify(err, 'revocation', -1, true);
          if (!(failed instanceof TargetStatementFailed)) throw failed;
          throw new TargetStatementFailed('revocation', -1, failed.sqlstate, `DROP ROLE: ${failed.message}`);
        }
      });
      return result;
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.allSettled(pools.map((p) => p.pool.end()));
  }
}
