// `npm run db:migrate`: apply the migrations to DATABASE_URL (or to the embedded PostgreSQL of COFFER_DATA_DIR).
import path from 'node:path';
import { loadConfig, processEnv } from '../config.ts';
import { startEmbeddedPostgres } from './embedded.ts';
import { runMigrations } from './migrate.ts';

const parsed = loadConfig(processEnv());
if (!parsed.ok) {
  for (const p of parsed.problems) process.stderr.write(`coffer: ${p}\n`);
  process.exit(1);
}
const { config } = parsed;
const embedded = config.databaseUrl
  ? null
  : await startEmbeddedPostgres({ dir: path.join(config.dataDir, 'postgres'), port: config.embeddedPgPort });
try {
  await runMigrations(config.databaseUrl ?? (embedded?.url as string));
  process.stdout.write('coffer: migrations applied\n');
} finally {
  await embedded?.stop();
}
