import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import pg from 'pg';

export const APP_ROLE = 'coffer_app';

/**
 * A SCRAM-SHA-256 verifier (RFC 5802/7677) for `password`, in the form PostgreSQL stores.
 * ALTER ROLE cannot take bind parameters, so we send the verifier, never the password: even a cluster
 * that logs DDL then records nothing that lets anyone log in.
 */
export function scramVerifier(password: string, iterations = 4096): string {
  const salt = randomBytes(16);
  const salted = pbkdf2Sync(password.normalize('NFKC'), salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

/** HKDF purpose for the app role's password; see MasterKeyring.derive. */
export const APP_ROLE_PASSWORD_PURPOSE = 'coffer/db-app-role-password/v1';

/** Gives the app role LOGIN and the password; returns the URL to connect as it. Needs an owner connection. */
export async function provisionAppRole(ownerUrl: string, password: string): Promise<string> {
  const client = new pg.Client({ connectionString: ownerUrl, application_name: 'coffer-provision' });
  await client.connect();
  try {
    await client.query(`ALTER ROLE ${APP_ROLE} WITH LOGIN PASSWORD '${scramVerifier(password)}'`);
  } finally {
    await client.end();
  }
  const url = new URL(ownerUrl);
  url.username = APP_ROLE;
  url.password = password;
  return url.toString();
}

interface RoleCheckRow {
  rolname: string;
  rolsuper: boolean;
  rolbypassrls: boolean;
  owned: number;
  privileged_member: boolean;
  audit_mutable: boolean;
  audit_writable: boolean;
  unprotected: string[] | null;
}

/**
 * The start-up refusal: the role the API queries with must not be able to step around row-level security
 * or rewrite the audit log. Returns one message per problem; empty means safe.
 */
export async function checkAppRole(pool: pg.Pool): Promise<string[]> {
  let rows: RoleCheckRow[];
  try {
    ({ rows } = await pool.query<RoleCheckRow>(`
    select r.rolname, r.rolsuper, r.rolbypassrls,
      (select count(*)::int from pg_class c where c.relowner = r.oid) as owned,
      exists (
        select 1 from pg_roles o
        where o.oid <> r.oid
          and (o.rolsuper or o.rolbypassrls or o.oid = (select nspowner from pg_namespace where nspname = 'coffer'))
          and pg_has_role(r.oid, o.oid, 'MEMBER')
      ) as privileged_member,
      (has_table_privilege(r.oid, 'coffer.audit_events', 'UPDATE')
        or has_table_privilege(r.oid, 'coffer.audit_events', 'DELETE')
        or has_table_privilege(r.oid, 'coffer.audit_events', 'TRUNCATE')) as audit_mutable,
      (has_table_privilege(r.oid, 'coffer.audit_events', 'INSERT')
        or has_table_privilege(r.oid, 'coffer.audit_heads', 'INSERT')
        or has_table_privilege(r.oid, 'coffer.audit_heads', 'UPDATE')) as audit_writable,
      (select array_agg(c.relname::text order by c.relname) from pg_class c
        where c.relnamespace = 'coffer'::regnamespace and c.relkind in ('r', 'p')
          and not (c.relrowsecurity and c.relforcerowsecurity)) as unprotected
    from pg_roles r where r.rolname = current_user`));
  } catch (err) {
    return [
      `cannot inspect the query role (${(err as Error).message}): has the migration granted it the coffer schema?`,
    ];
  }
  const row = rows[0];
  if (!row) return ['cannot read the query role from pg_roles'];
  const problems: string[] = [];
  if (row.rolsuper) problems.push(`database role ${row.rolname} is a superuser: it would bypass row-level security`);
  if (row.rolbypassrls) problems.push(`database role ${row.rolname} has BYPASSRLS`);
  if (row.owned > 0)
    problems.push(`database role ${row.rolname} owns ${row.owned} relation(s): owners can disable RLS`);
  if (row.privileged_member)
    problems.push(`database role ${row.rolname} is a member of a superuser, BYPASSRLS or schema-owner role`);
  if (row.audit_mutable) problems.push(`database role ${row.rolname} can update, delete or truncate audit events`);
  // Events go in only through coffer.audit_append, which computes their digests and keys their links.
  if (row.audit_writable)
    problems.push(`database role ${row.rolname} can insert audit events or move chain heads without audit_append`);
  if (row.unprotected?.length)
    problems.push(`row-level security is not enabled and forced on: ${row.unprotected.join(', ')}`);
  return problems;
}
