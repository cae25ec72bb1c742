// The stack's own limit: a bare Fastify server whose one route runs `SELECT 1` through a pg pool.
// Started by the benchmark as a separate process, on the same Node, against the same PostgreSQL.
import Fastify from 'fastify';
import pg from 'pg';

const url = process.env.BASELINE_DATABASE_URL;
const port = Number(process.env.BASELINE_PORT ?? 7499);
const pool = new pg.Pool({ connectionString: url, max: Number(process.env.BASELINE_POOL_MAX ?? 20) });
const app = Fastify({ logger: false });
app.get('/select1', async () => {
  const { rows } = await pool.query('select 1 as one');
  return { one: rows[0].one };
});
await app.listen({ host: '127.0.0.1', port });
process.stdout.write(`baseline listening on ${port}\n`);
const stop = async () => {
  await app.close();
  await pool.end();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
