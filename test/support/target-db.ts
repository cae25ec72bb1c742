import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { scramVerifier } from '../../apps/api/src/db/roles.ts';
import { withClient, withDatabase } from './db.ts';

/**
 * A corner of the target PostgreSQL (the second cluster the global setup starts) for one test file: an admin role
 * that is no superuser (CREATEROLE and pg_signal_backend, as docs/dynamic-credentials.md asks for), a database it
 * owns with a table in it, and superuser access for looking under the hood.
 */
export interface TargetCorner {
  run: string;
  /** What a backend's connection secret holds: the admin role's URL. */
  adminUrl: string;
  adminPassword: string;
  database: string;
  /** A URL to log in to that database as `user` with `password` (a lease). */
  loginUrl(user: string, password: string): string;
  /** SQL as the superuser, in the corner's database. */
  query<T extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, params?: unknown[]): Promise<T[]>;
  roleExists(name: string): Promise<boolean>;
  drop(): Promise<void>;
}

export async function targetCorner(superUrl: string = inject('targetDatabaseUrl')): Promise<TargetCorner> {
  const run = randomBytes(4).toString('hex');
  const admin = `dyn_admin_${run}`;
  const database = `dyn_${run}`;
  const adminPassword = randomBytes(18).toString('base64url');
  await withClient(superUrl, async (c) => {
    // As a SCRAM verifier, as Coffer sends passwords: a target that logs statements records nothing to log in with.
    await c.query(`create role ${admin} login createrole password '${scramVerifier(adminPassword)}'`);
    await c.query(`grant pg_signal_backend to ${admin}`);
    await c.query(`create database ${database} owner ${admin}`);
  });
  const adminUrl = (() => {
    const u = new URL(withDatabase(superUrl, database));
    u.username = admin;
    u.password = adminPassword;
    return u.toString();
  })();
  await withClient(adminUrl, async (c) => {
    await c.query('create table items (id int primary key, label text)');
    await c.query("insert into items values (1, 'one'), (2, 'two')");
    await c.query('create table revocations (role text not null, at timestamptz not null default now())');
  });
  const inCorner = withDatabase(superUrl, database);
  const query = async <T extends pg.QueryResultRow>(sql: string, params: unknown[] = []) =>
    withClient(inCorner, async (c) => (await c.query<T>(sql, params)).rows);
  return {
    run,
    adminUrl,
    adminPassword,
    database,
    loginUrl(user, password) {
      const u = new URL(inCorner);
      u.username = encodeURIComponent(user);
      u.password = encodeURIComponent(password);
      return u.toString();
    },
    query,
    async roleExists(name) {
      return (await query('select 1 from pg_roles where rolname = $1', [name])).length > 0;
    },
    async drop() {
      await withClient(superUrl, async (c) => {
        await c.query(`drop database if exists ${database} with (force)`);
        // Roles the admin made and the tests left behind, then the admin itself.
        const { rows } = await c.query<{ rolname: string }>(
          `select r.rolname from pg_roles r join pg_auth_members m on m.roleid = r.oid
           join pg_roles a on a.oid = m.member where a.rolname = $1 and m.admin_option`,
          [admin],
        );
        for (const r of rows) await c.query(`drop role if exists ${pg.escapeIdentifier(r.rolname)}`);
        await c.query(`drop role if exists ${admin}`);
      });
    },
  };
}

/** The statements most tests configure: a role that can read `items`, revoked by taking that back. */
export const READ_ITEMS = {
  creationStatements: [
    'CREATE ROLE {{name}} LOGIN PASSWORD {{password}} VALID UNTIL {{expiration}}',
    'GRANT SELECT ON items TO {{name}}',
  ],
  revocationStatements: [
    'REVOKE ALL ON items FROM {{name}}',
    'INSERT INTO revocations (role) VALUES ({{name_literal}})',
  ],
};

/** Logs in as a lease and runs one statement; the error's SQLSTATE if that fails. */
export async function asLease(
  url: string,
  sql: string,
): Promise<{ rows: pg.QueryResultRow[] } | { code: string; message: string }> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  try {
    await c.connect();
    return { rows: (await c.query(sql)).rows };
  } catch (err) {
    const e = err as { code?: string; message?: string };
    return { code: e.code ?? 'none', message: e.message ?? '' };
  } finally {
    await c.end().catch(() => undefined);
  }
}
