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
// A signal would otherwise end the process without its exit hook, leaving the PostgreSQL it started running (that
// runs in its own process group, so a Ctrl-C reaches only this process).
for (const [signal, n] of [
  ['SIGINT', 2],
  ['SIGTERM', 15],
  ['SIGHUP', 1],
] as const) {
  process.once(signal, () => process.exit(128 + n));
}
try {
  // Beside a running `npm start`, its database is borrowed (and left running), never stopped.
  const embedded = config.databaseUrl
    ? null
    : await startEmbeddedPostgres({
        dir: path.join(config.dataDir, 'postgres'),
        port: config.embeddedPgPort,
        whenInUse: 'connect',
      });
  try {
    await runMigrations(config.databaseUrl ?? (embedded?.url as string));
    const through =
      embedded && !embedded.owned ? ` (through the running embedded PostgreSQL, pid ${embedded.pid})` : '';
    process.stdout.write(`coffer: migrations applied${through}\n`);
  } finally {
    await embedded?.stop();
  }
} catch (err) {
  process.stderr.write(`coffer: migrations failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}
