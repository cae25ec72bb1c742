import { startEmbeddedPostgres } from './apps/api/src/db/embedded.ts';

const s = await startEmbeddedPostgres({
  dir: '/tmp/pgprof/db',
  port: 25432,
  ephemeral: false,
  postgresFlags: ['-c', 'shared_preload_libraries=pg_stat_statements', '-c', 'pg_stat_statements.track=all'],
});
console.log(s.url);
process.on('SIGTERM', async () => {
  await s.stop();
  process.exit(0);
});
setInterval(() => {}, 1 << 30);
