import pg from 'pg';
import { inject } from 'vitest';
import { runMigrations } from '../../apps/api/src/db/migrate.ts';

/** Direct database access for tests that look under the API: owner (migrations) or app-role connections. */

export async function withClient<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, application_name: 'coffer-test-direct' });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** The same server and credentials, another database. */
export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

/** The PostgreSQL error code (SQLSTATE) a promise rejects with, or `null` when it resolves. */
export async function sqlState(p: Promise<unknown>): Promise<{ code: string; message: string } | null> {
  try {
    await p;
    return null;
  } catch (err) {
    const e = err as { code?: unknown; message?: unknown };
    return { code: typeof e.code === 'string' ? e.code : 'none', message: String(e.message) };
  }
}

/** Any constant: the key of the suite-wide lock below, in the suite's own database. */
const SCRATCH_MIGRATIONS_LOCK = 7_400_001;

/**
 * runMigrations on a scratch database of the test cluster, one file at a time. The migrations alter the app role,
 * which is the whole cluster's, and runMigrations' own advisory lock holds only in the database it migrates: two
 * files migrating scratch databases at once fail with "tuple concurrently updated".
 */
export async function migrateScratch(ownerUrl: string, folder?: string): Promise<void> {
  await withClient(inject('ownerDatabaseUrl'), async (lock) => {
    await lock.query('select pg_advisory_lock($1)', [SCRATCH_MIGRATIONS_LOCK]);
    try {
      await runMigrations(ownerUrl, folder);
    } finally {
      await lock.query('select pg_advisory_unlock($1)', [SCRATCH_MIGRATIONS_LOCK]);
    }
  });
}
