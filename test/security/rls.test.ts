import { randomBytes } from 'node:crypto';
import { PLATFORM_TENANT_ID, type WhoAmI } from '@coffer/contracts';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { checkAppRole } from '../../apps/api/src/db/roles.ts';
import { sqlState, withClient } from '../support/db.ts';
import { bearer, createIdentity, createTenant, rootToken, type TestTenant } from '../support/factories.ts';
import { createTestApp, type TestApp } from '../support/test-app.ts';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

const appUrl = () => inject('appDatabaseUrl');
const ownerUrl = () => inject('ownerDatabaseUrl');
const TABLES = ['tenants', 'identities', 'tenant_keys', 'audit_events', 'audit_heads'] as const;

async function adminIdOf(tenant: TestTenant): Promise<string> {
  const res = await t.app.inject({ url: '/v1/auth/whoami', headers: bearer(tenant.adminToken) });
  return (res.json() as WhoAmI).identityId;
}

/** Two tenants, each with an admin and a service identity (and so a data key and audit events). */
async function twoTenants(): Promise<[TestTenant, TestTenant]> {
  const root = await rootToken(t.app);
  const a = await createTenant(t.app, root);
  const b = await createTenant(t.app, root);
  await createIdentity(t.app, a.adminToken, { role: 'service' });
  await createIdentity(t.app, b.adminToken, { role: 'service' });
  return [a, b];
}

async function setTenant(c: pg.Client, tenantId: string): Promise<void> {
  await c.query(`select set_config('app.tenant_id', $1, false)`, [tenantId]);
}

describe('row-level security for the app role', () => {
  it('shows no row of any tenant table while no tenant is set', async () => {
    await twoTenants();
    await withClient(appUrl(), async (c) => {
      for (const table of TABLES) {
        const { rowCount } = await c.query(`select * from coffer.${table}`);
        expect(rowCount, table).toBe(0);
      }
      // An empty setting is the same as none.
      await setTenant(c, '');
      for (const table of TABLES) expect((await c.query(`select * from coffer.${table}`)).rowCount, table).toBe(0);
    });
    // Control: the owner sees rows in every one of them, so the zeros above are RLS at work.
    await withClient(ownerUrl(), async (c) => {
      for (const table of TABLES) {
        expect((await c.query(`select 1 from coffer.${table} limit 1`)).rowCount, table).toBe(1);
      }
    });
  });

  it("with tenant A set, shows A's rows and never B's", async () => {
    const [a, b] = await twoTenants();
    await withClient(appUrl(), async (c) => {
      await setTenant(c, a.tenant.id);
      const tenants = await c.query<{ id: string }>('select id from coffer.tenants');
      expect(tenants.rows.map((r) => r.id)).toEqual([a.tenant.id]);

      const ids = await c.query<{ tenant_id: string }>('select tenant_id from coffer.identities');
      expect(ids.rowCount).toBe(2);
      expect(ids.rows.every((r) => r.tenant_id === a.tenant.id)).toBe(true);

      for (const table of ['tenant_keys', 'audit_events', 'audit_heads'] as const) {
        const { rows } = await c.query<{ tenant_id: string }>(`select tenant_id from coffer.${table}`);
        expect(rows.length, table).toBeGreaterThan(0);
        expect(new Set(rows.map((r) => r.tenant_id)), table).toEqual(new Set([a.tenant.id]));
      }

      // Asking for B by id finds nothing.
      for (const table of ['identities', 'tenant_keys', 'audit_events'] as const) {
        const { rowCount } = await c.query(`select 1 from coffer.${table} where tenant_id = $1`, [b.tenant.id]);
        expect(rowCount, table).toBe(0);
      }
      expect((await c.query('select 1 from coffer.tenants where id = $1', [b.tenant.id])).rowCount).toBe(0);
    });
  });

  it("refuses writes that would put a row into another tenant, and cannot touch B's rows", async () => {
    const [a, b] = await twoTenants();
    const aAdmin = await adminIdOf(a);
    const bAdmin = await adminIdOf(b);
    await withClient(appUrl(), async (c) => {
      await setTenant(c, a.tenant.id);
      const insert = await sqlState(
        c.query(
          `insert into coffer.identities (id, tenant_id, client_id, name, role, secret_hash)
           values (gen_random_uuid(), $1, $2, 'intruder', 'admin', 'scrypt$x')`,
          [b.tenant.id, `coffer_ci_rls_${randomBytes(6).toString('hex')}`],
        ),
      );
      expect(insert?.code).toBe('42501');
      expect(insert?.message).toContain('row-level security');

      const move = await sqlState(
        c.query('update coffer.identities set tenant_id = $1 where id = $2', [b.tenant.id, aAdmin]),
      );
      expect(move?.code).toBe('42501');

      const key = await sqlState(
        c.query(
          `insert into coffer.tenant_keys (tenant_id, version, wrapped_key, master_key_id, state)
           values ($1, 99, '\\x00', 'k', 'active')`,
          [b.tenant.id],
        ),
      );
      expect(key?.code).toBe('42501');

      const event = await sqlState(
        c.query(
          `insert into coffer.audit_events (tenant_id, seq, occurred_at, action, outcome, digest, prev_hash, hash)
           values ($1, 999999, now(), 'forged', 'allowed', '\\x00', '\\x00', '\\x00')`,
          [b.tenant.id],
        ),
      );
      expect(event?.code).toBe('42501');

      const updated = await c.query(`update coffer.identities set name = 'pwned' where id = $1`, [bAdmin]);
      expect(updated.rowCount).toBe(0);
      const deleted = await c.query('delete from coffer.identities where id = $1', [bAdmin]);
      expect(deleted.rowCount).toBe(0);
    });
    await withClient(ownerUrl(), async (c) => {
      const { rows } = await c.query<{ name: string }>('select name from coffer.identities where id = $1', [bAdmin]);
      expect(rows[0]?.name).toBe('admin');
    });
  });

  it("cannot give tenant A a version of B's secret, by insert or by moving A's own version", async () => {
    const [a, b] = await twoTenants();
    const put = (tenant: TestTenant) =>
      t.app.inject({
        method: 'PUT',
        url: '/v1/secrets/sandbox/app/TOKEN',
        headers: bearer(tenant.adminToken),
        payload: { value: randomBytes(8).toString('hex') },
      });
    expect((await put(a)).statusCode).toBe(201);
    expect((await put(b)).statusCode).toBe(201);
    const idOf = (tenantId: string) =>
      withClient(ownerUrl(), async (c) => {
        const { rows } = await c.query<{ id: string }>(
          "select id from coffer.secrets where tenant_id = $1 and name = 'TOKEN'",
          [tenantId],
        );
        return rows[0]?.id as string;
      });
    const [aSecret, bSecret] = [await idOf(a.tenant.id), await idOf(b.tenant.id)];
    await withClient(appUrl(), async (c) => {
      await setTenant(c, a.tenant.id);
      // The row is A's, so row-level security lets it in: the foreign key on (tenant_id, secret_id) refuses it.
      const planted = await sqlState(
        c.query(
          `insert into coffer.secret_versions (tenant_id, secret_id, version, ciphertext, dek_version)
           values ($1, $2, 99, null, 1)`,
          [a.tenant.id, bSecret],
        ),
      );
      expect(planted?.code).toBe('23503');
      const moved = await sqlState(
        c.query('update coffer.secret_versions set secret_id = $1, version = 98 where secret_id = $2', [
          bSecret,
          aSecret,
        ]),
      );
      expect(moved?.code).toBe('23503');
    });
    await withClient(ownerUrl(), async (c) => {
      const { rows } = await c.query<{ n: number }>(
        'select count(*)::int as n from coffer.secret_versions where secret_id = $1',
        [bSecret],
      );
      expect(rows[0]?.n).toBe(1);
    });
  });

  it('the platform scope sees every tenant but no identity, key or event of a tenant', async () => {
    const [a, b] = await twoTenants();
    await withClient(appUrl(), async (c) => {
      await setTenant(c, PLATFORM_TENANT_ID);
      const { rows } = await c.query<{ id: string }>('select id from coffer.tenants where id = any($1)', [
        [a.tenant.id, b.tenant.id],
      ]);
      expect(rows).toHaveLength(2);
      const ids = await c.query('select 1 from coffer.identities where tenant_id = any($1)', [
        [a.tenant.id, b.tenant.id],
      ]);
      expect(ids.rowCount).toBe(0);
      const events = await c.query('select 1 from coffer.audit_events where tenant_id = any($1)', [
        [a.tenant.id, b.tenant.id],
      ]);
      expect(events.rowCount).toBe(0);
    });
  });

  it('cannot switch row-level security off', async () => {
    await withClient(appUrl(), async (c) => {
      await c.query('set row_security = off');
      const err = await sqlState(c.query('select * from coffer.identities'));
      expect(err?.code).toBe('42501');
      await c.query('reset row_security');
      const alter = await sqlState(c.query('alter table coffer.identities disable row level security'));
      expect(alter?.code).toBe('42501');
      const noForce = await sqlState(c.query('alter table coffer.identities no force row level security'));
      expect(noForce?.code).toBe('42501');
    });
  });
});

describe('the audit log is append-only', () => {
  it('the app role may not UPDATE, DELETE or TRUNCATE coffer.audit_events', async () => {
    const tenant = await createTenant(t.app);
    await withClient(appUrl(), async (c) => {
      await setTenant(c, tenant.tenant.id);
      expect((await c.query('select 1 from coffer.audit_events')).rowCount).toBeGreaterThan(0);
      for (const sql of [
        `update coffer.audit_events set action = 'edited'`,
        'delete from coffer.audit_events',
        'truncate coffer.audit_events',
      ]) {
        const err = await sqlState(c.query(sql));
        expect(err?.code, sql).toBe('42501');
        expect(err?.message, sql).toContain('permission denied');
      }
    });
  });

  it('even the owner is refused UPDATE, DELETE and TRUNCATE by the trigger', async () => {
    const tenant = await createTenant(t.app);
    await withClient(ownerUrl(), async (c) => {
      const where = 'where tenant_id = $1';
      const actions = async () =>
        (
          await c.query<{ action: string }>(`select action from coffer.audit_events ${where} order by seq`, [
            tenant.tenant.id,
          ])
        ).rows.map((r) => r.action);
      const before = await actions();
      expect(before).toEqual(['identities.create', 'auth.token']);
      for (const [sql, params] of [
        [`update coffer.audit_events set action = 'edited' ${where}`, [tenant.tenant.id]],
        [`delete from coffer.audit_events ${where}`, [tenant.tenant.id]],
        ['truncate coffer.audit_events', []],
      ] as const) {
        // In a transaction that is rolled back whatever happens: the table is shared with every other test.
        await c.query('begin');
        const err = await sqlState(c.query(sql, [...params]));
        await c.query('rollback');
        expect(err?.code, sql).toBe('42501');
        expect(err?.message, sql).toContain('append-only');
      }
      expect(await actions()).toEqual(before);
    });
  });
});

describe('checkAppRole (the start-up refusal)', () => {
  async function problemsFor(url: string): Promise<string[]> {
    const pool = new pg.Pool({ connectionString: url, max: 1 });
    try {
      return await checkAppRole(pool);
    } finally {
      await pool.end();
    }
  }

  it('finds nothing wrong with the app role', async () => {
    expect(await problemsFor(appUrl())).toEqual([]);
  });

  it('refuses the owner (superuser or table owner)', async () => {
    const problems = await problemsFor(ownerUrl());
    expect(problems.length).toBeGreaterThan(0);
    expect(problems.join('\n')).toMatch(/superuser|owns/);
  });

  it('refuses a role with BYPASSRLS', async () => {
    const role = `coffer_probe_${randomBytes(4).toString('hex')}`;
    const password = randomBytes(18).toString('base64url');
    await withClient(ownerUrl(), async (c) => {
      await c.query(`create role ${role} login bypassrls password '${password}'`);
      await c.query(`grant usage on schema coffer to ${role}`);
    });
    try {
      const url = new URL(ownerUrl());
      url.username = role;
      url.password = password;
      const problems = await problemsFor(url.toString());
      expect(problems.some((p) => p.includes('BYPASSRLS'))).toBe(true);
    } finally {
      await withClient(ownerUrl(), async (c) => {
        await c.query(`revoke usage on schema coffer from ${role}`);
        await c.query(`drop role ${role}`);
      });
    }
  });
});
