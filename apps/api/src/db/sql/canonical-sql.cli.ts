import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { findMigrationsFolder, latestMigration } from '../migrate.ts';
import { describeDrift, loadCanonical, migrationDrift, migrationSql } from './canonical-sql.ts';

/**
 * `npm run db:sql`: after editing a canonical file under apps/api/src/db/sql/, writes the migration that brings the
 * database to it (a drizzle-kit custom migration, so the journal and snapshot stay drizzle's). `-- --check` only
 * reports drift and exits 1 if there is any, for CI.
 */
const { values } = parseArgs({
  options: { check: { type: 'boolean', default: false }, name: { type: 'string', default: 'canonical_sql' } },
});
const folder = findMigrationsFolder();
const canonical = loadCanonical();
const drift = migrationDrift(canonical, folder);
const orphans = drift.filter((d) => !canonical.some((c) => c.kind === d.kind && c.name === d.name));

if (drift.length === 0) {
  process.stdout.write('every canonical SQL file matches its newest migration\n');
} else if (values.check || orphans.length > 0) {
  process.stderr.write(`${describeDrift(drift)}\n`);
  if (!values.check) process.stderr.write('give every object above a canonical file first\n');
  process.exitCode = 1;
} else {
  const sql = migrationSql(canonical, folder);
  const root = path.dirname(folder);
  execFileSync(
    path.join(root, 'node_modules', '.bin', 'drizzle-kit'),
    ['generate', '--custom', `--name=${values.name}`],
    {
      cwd: root,
      stdio: 'inherit',
    },
  );
  const file = path.join(folder, `${latestMigration(folder).tag}.sql`);
  if (readFileSync(file, 'utf8').trim() !== '-- Custom SQL migration file, put your code below! --') {
    throw new Error(`${file} is not the empty migration drizzle-kit was asked for`);
  }
  writeFileSync(file, sql);
  process.stdout.write(`wrote ${path.relative(root, file)} for: ${drift.map((d) => d.name).join(', ')}\n`);
}
