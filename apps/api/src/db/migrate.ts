import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { drizzle } from 'drizzle-orm/node-postgres';
import { migrate } from 'drizzle-orm/node-postgres/migrator';
import pg from 'pg';

/** Serialises migrations across replicas that start together. */
const MIGRATION_LOCK = 7_400_001;

/** Finds the repository's drizzle/ folder from wherever this module runs (source, bundle or container). */
export function findMigrationsFolder(start = path.dirname(fileURLToPath(import.meta.url))): string {
  let dir = start;
  for (;;) {
    const candidate = path.join(dir, 'drizzle');
    if (existsSync(path.join(candidate, 'meta', '_journal.json'))) return candidate;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`no drizzle/meta/_journal.json above ${start}`);
    dir = parent;
  }
}

interface Journal {
  entries: { idx: number; when: number; tag: string }[];
}

/** The newest migration this build knows, as drizzle records it (`created_at` = the journal's `when`). */
export function latestMigration(folder: string): { tag: string; when: number } {
  const journal = JSON.parse(readFileSync(path.join(folder, 'meta', '_journal.json'), 'utf8')) as Journal;
  const last = journal.entries.at(-1);
  if (!last) throw new Error('the migration journal is empty');
  return { tag: last.tag, when: last.when };
}

export async function runMigrations(ownerUrl: string, folder = findMigrationsFolder()): Promise<void> {
  const client = new pg.Client({ connectionString: ownerUrl, application_name: 'coffer-migrate' });
  await client.connect();
  try {
    await client.query('select pg_advisory_lock($1)', [MIGRATION_LOCK]);
    await migrate(drizzle(client), { migrationsFolder: folder });
  } finally {
    await client.query('select pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => undefined);
    await client.end();
  }
}

/** Whether the database has every migration this build ships (read through the app role). */
export async function migrationsCurrent(pool: pg.Pool, folder: string): Promise<{ ok: boolean; message?: string }> {
  const latest = latestMigration(folder);
  const { rows } = await pool.query<{ when: string | null }>(
    'select max(created_at)::text as when from drizzle.__drizzle_migrations',
  );
  const applied = rows[0]?.when ? Number(rows[0].when) : 0;
  if (applied >= latest.when) return { ok: true };
  return { ok: false, message: `database is behind this build: ${latest.tag} not applied (run npm run db:migrate)` };
}
