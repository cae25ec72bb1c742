import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { findMigrationsFolder } from '../../apps/api/src/db/migrate.ts';
import {
  databaseDrift,
  describeDrift,
  loadCanonical,
  migrationDrift,
  migrationSql,
} from '../../apps/api/src/db/sql/canonical-sql.ts';
import { migrateScratch } from '../support/db.ts';
import { ownerClient } from '../support/secrets.ts';

/**
 * Each SQL function and trigger has one canonical file (apps/api/src/db/sql/); migrations are made from them. A
 * migrated database, and the newest migration defining each object, must say what the file says.
 */
describe('canonical SQL', () => {
  const canonical = loadCanonical();

  it('has a file for each of the 22 functions and 7 triggers', () => {
    expect(canonical.filter((c) => c.kind === 'function')).toHaveLength(22);
    expect(canonical.filter((c) => c.kind === 'trigger')).toHaveLength(7);
  });

  it('the newest migration defining each object says what its canonical file says', () => {
    const drift = migrationDrift(canonical, findMigrationsFolder());
    expect(drift, describeDrift(drift)).toEqual([]);
  });

  it('the migrated test database holds exactly the canonical definitions', async () => {
    const owner = await ownerClient();
    try {
      const drift = await databaseDrift(owner, canonical);
      expect(drift, describeDrift(drift)).toEqual([]);
    } finally {
      await owner.end();
    }
  });

  it('a changed canonical file makes a migration that drops a function whose result changed', () => {
    const bundleNames = canonical.find((c) => c.name === 'bundle_names');
    if (!bundleNames) throw new Error('bundle_names has no canonical file');
    const changed = bundleNames.statement.replace('RETURNS TABLE (name text)', 'RETURNS TABLE (name text, n integer)');
    expect(changed).not.toBe(bundleNames.statement);
    const sql = migrationSql(
      canonical.map((c) => (c === bundleNames ? { ...c, statement: changed, source: changed } : c)),
      findMigrationsFolder(),
    );
    expect(sql).toContain('DROP FUNCTION coffer.bundle_names(p_tenant uuid, p_env text, p_kind text, p_owner text);');
    expect(sql).toContain('RETURNS TABLE (name text, n integer)');
    expect(sql).not.toContain('read_secret');
  });

  describe('on a scratch database altered by hand', () => {
    const name = `coffer_canonical_${randomBytes(4).toString('hex')}`;
    let admin: pg.Client;
    let scratch: pg.Client;

    beforeAll(async () => {
      admin = await ownerClient();
      await admin.query(`create database ${name}`);
      const url = new URL(inject('ownerDatabaseUrl'));
      url.pathname = `/${name}`;
      await migrateScratch(url.toString());
      scratch = new pg.Client({ connectionString: url.toString() });
      await scratch.connect();
    });
    afterAll(async () => {
      await scratch?.end();
      await admin?.query(`drop database if exists ${name} with (force)`);
      await admin?.end();
    });

    it('starts without drift', async () => {
      expect(await databaseDrift(scratch, canonical)).toEqual([]);
    });

    it('names a function replaced by hand, and a trigger dropped and made again differently', async () => {
      await scratch.query(`
        CREATE OR REPLACE FUNCTION coffer.bundle_names(p_tenant uuid, p_env text, p_kind text, p_owner text)
          RETURNS TABLE(name text) LANGUAGE plpgsql AS $$
        BEGIN
          RETURN QUERY SELECT s.name FROM coffer.secrets s WHERE s.tenant_id = p_tenant;
        END
        $$`);
      await scratch.query(`
        DROP TRIGGER identities_bump_revision ON coffer.identities;
        CREATE TRIGGER identities_bump_revision BEFORE UPDATE OF name ON coffer.identities
          FOR EACH ROW EXECUTE FUNCTION coffer.identities_bump_revision()`);
      await scratch.query('CREATE FUNCTION coffer.sneaky() RETURNS integer LANGUAGE sql AS $$ SELECT 1 $$');
      const drift = await databaseDrift(scratch, canonical);
      expect(drift.map((d) => `${d.kind} ${d.name}: ${d.problem}`).sort()).toEqual([
        'function bundle_names: differs',
        'function sneaky: has no canonical file',
        'trigger identities_bump_revision: differs',
      ]);
      expect(drift.find((d) => d.name === 'bundle_names')?.actual).toContain('WHERE s.tenant_id = p_tenant;');
    });
  });
});
