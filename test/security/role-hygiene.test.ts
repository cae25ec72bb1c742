import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { checkAppRole, scramVerifier } from '../../apps/api/src/db/roles.ts';
import { migrateScratch, withClient } from '../support/db.ts';
import { runServerToExit } from '../support/security.ts';
import { freePort, type ScratchDatabase, scratchDatabase } from '../support/server-process.ts';

/**
 * The start-up refusal of an unsafe query role (apps/api/src/db/roles.ts `checkAppRole`), against roles and tables
 * made for the purpose. Everything unsafe is built in a scratch database migrated for this file, with scratch roles
 * of our own: the shared `coffer_app` role and the shared database's `coffer` schema are only ever read here, so the
 * other test files, which run at the same time, never see a half-made hazard.
 */

const run = randomBytes(4).toString('hex');
let db: ScratchDatabase;
const roles: string[] = [];
const pools: pg.Pool[] = [];

beforeAll(async () => {
  db = await scratchDatabase();
  await migrateScratch(db.ownerUrl);
}, 60_000);

afterAll(async () => {
  for (const p of pools.splice(0)) await p.end().catch(() => undefined);
  await db?.drop();
  // Roles are cluster-wide: drop ours once nothing of theirs is left (their scratch database is gone).
  await withClient(inject('ownerDatabaseUrl'), async (c) => {
    for (const r of roles.splice(0).reverse()) await c.query(`drop role if exists ${r}`);
  });
});

/** SQL as the owner of the scratch database. */
const asOwner = (sql: string) => withClient(db.ownerUrl, (c) => c.query(sql));

interface ScratchRole {
  name: string;
  url: string;
  check(): Promise<string[]>;
}

/**
 * A login role of our own with a password set now (sent as a SCRAM verifier, never in clear), with USAGE on the
 * scratch database's coffer schema (what the real app role has to inspect itself) unless told otherwise.
 */
async function scratchRole(
  label: string,
  o: { attributes?: string; schemaUsage?: boolean } = {},
): Promise<ScratchRole> {
  const name = `coffer_scratch_${run}_${label}`;
  const password = randomBytes(18).toString('base64url');
  roles.push(name);
  await asOwner(`create role ${name} login ${o.attributes ?? ''} password '${scramVerifier(password)}'`);
  if (o.schemaUsage !== false) await asOwner(`grant usage on schema coffer to ${name}`);
  const url = new URL(db.ownerUrl);
  url.username = name;
  url.password = password;
  const pool = new pg.Pool({ connectionString: url.toString(), max: 1 });
  pools.push(pool);
  return { name, url: url.toString(), check: () => checkAppRole(pool) };
}

/** A NOLOGIN role to be a member of. */
async function groupRole(label: string, attributes: string): Promise<string> {
  const name = `coffer_scratch_${run}_${label}`;
  roles.push(name);
  await asOwner(`create role ${name} nologin ${attributes}`);
  return name;
}

describe('checkAppRole: safe roles pass', () => {
  it('the real app role, on the shared test database, has no problem', async () => {
    const pool = new pg.Pool({ connectionString: inject('appDatabaseUrl'), max: 1 });
    pools.push(pool);
    expect(await checkAppRole(pool)).toEqual([]);
  });

  it('the real app role and a bare scratch role, on the freshly migrated scratch database, have no problem', async () => {
    const appPool = new pg.Pool({ connectionString: db.appUrl, max: 1 });
    pools.push(appPool);
    expect(await checkAppRole(appPool)).toEqual([]);
    expect(await (await scratchRole('clean')).check()).toEqual([]);
  });
});

describe('checkAppRole: each unsafe role or table is reported', () => {
  it('a role with BYPASSRLS', async () => {
    const r = await scratchRole('bypass', { attributes: 'bypassrls' });
    expect(await r.check()).toEqual([`database role ${r.name} has BYPASSRLS`]);
  });

  it('a superuser', async () => {
    const r = await scratchRole('super', { attributes: 'superuser' });
    expect(await r.check()).toContain(`database role ${r.name} is a superuser: it would bypass row-level security`);
  });

  it('a role that owns a table (an owner can turn row-level security off)', async () => {
    const r = await scratchRole('owner');
    const table = `public.owned_${run}`;
    await asOwner(`create table ${table} (x int)`);
    await asOwner(`alter table ${table} owner to ${r.name}`);
    expect(await r.check()).toEqual([`database role ${r.name} owns 1 relation(s): owners can disable RLS`]);
    await asOwner(`drop table ${table}`);
    expect(await r.check()).toEqual([]);
  });

  it.each([
    ['a superuser role', 'superuser'],
    ['a BYPASSRLS role', 'bypassrls'],
  ])('a member of %s', async (_label, attributes) => {
    const group = await groupRole(`grp_${attributes}`, attributes);
    const r = await scratchRole(`member_${attributes}`);
    await asOwner(`grant ${group} to ${r.name}`);
    expect(await r.check()).toEqual([
      `database role ${r.name} is a member of a superuser, BYPASSRLS or schema-owner role`,
    ]);
  });

  it("a member of the coffer schema's owner role", async () => {
    const schemaOwner = await groupRole('schema_owner', '');
    const r = await scratchRole('member_owner');
    const { rows } = await asOwner(
      `select nspowner::regrole::text as owner from pg_namespace where nspname = 'coffer'`,
    );
    const original = (rows[0] as { owner: string }).owner;
    await asOwner(`alter schema coffer owner to ${schemaOwner}`);
    try {
      expect(await r.check()).toEqual([]);
      await asOwner(`grant ${schemaOwner} to ${r.name}`);
      expect(await r.check()).toEqual([
        `database role ${r.name} is a member of a superuser, BYPASSRLS or schema-owner role`,
      ]);
    } finally {
      await asOwner(`alter schema coffer owner to ${original}`);
    }
  });

  it.each(['UPDATE', 'DELETE', 'TRUNCATE'])('a role granted %s on coffer.audit_events', async (privilege) => {
    const r = await scratchRole(`audit_${privilege.toLowerCase()}`);
    await asOwner(`grant ${privilege} on coffer.audit_events to ${r.name}`);
    expect(await r.check()).toEqual([`database role ${r.name} can update, delete or truncate audit events`]);
    await asOwner(`revoke ${privilege} on coffer.audit_events from ${r.name}`);
    expect(await r.check()).toEqual([]);
  });

  it('a table in the coffer schema without row-level security, then with it enabled but not forced, then forced', async () => {
    const r = await scratchRole('rls');
    const table = `scratch_${run}`;
    await asOwner(`create table coffer.${table} (tenant_id uuid)`);
    try {
      const expected = [`row-level security is not enabled and forced on: ${table}`];
      expect(await r.check()).toEqual(expected);
      await asOwner(`alter table coffer.${table} enable row level security`);
      // Enabled is not enough: without FORCE the table's owner reads past every policy.
      expect(await r.check()).toEqual(expected);
      await asOwner(`alter table coffer.${table} force row level security`);
      expect(await r.check()).toEqual([]);
    } finally {
      await asOwner(`drop table if exists coffer.${table}`);
    }
  });

  it('a role that cannot even inspect the coffer schema', async () => {
    const r = await scratchRole('blind', { schemaUsage: false });
    const problems = await r.check();
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(
      /^cannot inspect the query role \(.*\): has the migration granted it the coffer schema\?$/,
    );
  });
});

describe('the built server refuses to start on an unsafe query role', () => {
  it('exits 1 naming the unprotected table, and never listens', async () => {
    const r = await scratchRole('process');
    const table = `scratch_proc_${run}`;
    await asOwner(`create table coffer.${table} (tenant_id uuid)`);
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'coffer-role-hygiene-'));
    try {
      const out = await runServerToExit({
        NODE_ENV: 'development',
        LOG_LEVEL: 'info',
        HOST: '127.0.0.1',
        PORT: String(await freePort()),
        // Only the query role's URL: no owner URL, so nothing is migrated or provisioned.
        DATABASE_APP_URL: r.url,
        COFFER_AUTO_MIGRATE: 'false',
        COFFER_MASTER_KEYS: inject('masterKeys'),
        COFFER_JWT_PRIVATE_KEY: inject('jwtPrivateKeyPem'),
        COFFER_DATA_DIR: dataDir,
      });
      expect(out.code).toBe(1);
      expect(out.stdout).toContain(`unsafe database role: row-level security is not enabled and forced on: ${table}`);
      expect(out.stdout).not.toContain('coffer is listening');
      expect(`${out.stdout}${out.stderr}`).not.toContain(new URL(r.url).password);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
      await asOwner(`drop table if exists coffer.${table}`);
    }
  });
});
