import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createPool } from '../../apps/api/src/db/database.ts';
import { namingClient, StatementNames } from '../../apps/api/src/db/named-statements.ts';

/**
 * The API's pool names every parameterised statement after its text, so PostgreSQL plans it once per connection.
 * Seen from PostgreSQL: the connection's own pg_prepared_statements.
 */
const prepared = async (client: pg.PoolClient | pg.Client) =>
  (await client.query<{ name: string; statement: string }>('select name, statement from pg_prepared_statements')).rows;

describe('named statements', () => {
  let pool: pg.Pool;
  beforeAll(() => {
    pool = createPool({
      url: inject('appDatabaseUrl'),
      max: 1,
      acquireTimeoutMs: 5_000,
      statementTimeoutMs: 5_000,
      applicationName: 'coffer-test-named',
      onError: () => undefined,
    });
  });
  afterAll(() => pool?.end());

  it('prepares a drizzle statement once per connection, under a name taken from its text', async () => {
    const orm = drizzle(pool);
    const marker = `named-${Date.now()}`;
    for (let i = 0; i < 3; i++) {
      const r = await orm.execute(sql`select ${marker}::text as m, ${i}::int as i`);
      expect(r.rows[0]).toEqual({ m: marker, i });
    }
    const client = await pool.connect();
    try {
      const mine = (await prepared(client)).filter((p) => p.statement.includes('as m,'));
      expect(mine).toHaveLength(1);
      expect(mine[0]?.name).toMatch(/^cf_[A-Za-z0-9_-]{20}$/);
      expect(mine[0]?.statement).toBe('select $1::text as m, $2::int as i');
    } finally {
      client.release();
    }
  });

  it('leaves statements without parameters, already named ones and pool.query text alike as they should be', async () => {
    const client = await pool.connect();
    try {
      await client.query('select 41 as plain');
      await client.query({ name: 'coffer_test_own_name', text: 'select $1::int as own', values: [1] });
      await client.query('select $1::int as via_text', [2]);
      const names = await prepared(client);
      expect(names.some((p) => p.statement.includes('41 as plain'))).toBe(false);
      expect(names.find((p) => p.statement.includes('as own'))?.name).toBe('coffer_test_own_name');
      expect(names.find((p) => p.statement.includes('as via_text'))?.name).toMatch(/^cf_/);
    } finally {
      client.release();
    }
  });

  it('names at most `limit` texts; past that, statements run unnamed', async () => {
    const names = new StatementNames(2);
    const Client = namingClient(names);
    const client = new Client({ connectionString: inject('appDatabaseUrl') });
    await client.connect();
    try {
      for (const n of [1, 2, 3]) {
        const r = await client.query(`select $1::int + ${n} as v`, [10]);
        expect(r.rows[0]).toEqual({ v: 10 + n });
      }
      expect(names.size).toBe(2);
      expect((await prepared(client)).filter((p) => p.name.startsWith('cf_'))).toHaveLength(2);
      expect(names.nameFor('select $1::int + 1 as v')).toMatch(/^cf_/);
      expect(names.nameFor('select $1::int + 3 as v')).toBeUndefined();
    } finally {
      await client.end();
    }
  });

  it('is off when prepared statements are (PgBouncer before 1.21): nothing is prepared', async () => {
    const off = createPool({
      url: inject('appDatabaseUrl'),
      max: 1,
      acquireTimeoutMs: 5_000,
      statementTimeoutMs: 5_000,
      applicationName: 'coffer-test-unnamed',
      onError: () => undefined,
      preparedStatements: false,
    });
    try {
      const client = await off.connect();
      try {
        await client.query('select $1::int as unnamed', [3]);
        // The code's own names too (Database.statement, the audit batcher): one switch for every statement.
        await client.query({ name: 'coffer_test_own_name', text: 'select $1::int as own', values: [4] });
        expect(await prepared(client)).toEqual([]);
      } finally {
        client.release();
      }
    } finally {
      await off.end();
    }
  });
});
