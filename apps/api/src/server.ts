import path from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { buildApp } from './app.ts';
import { linkKeys } from './audit/audit.digest.ts';
import { SigningKeys } from './auth/signing-keys.ts';
import type { Config } from './config.ts';
import { MasterKeyring } from './crypto/keyring.ts';
import { RowMacs } from './crypto/row-macs.ts';
import { createPool, Database } from './db/database.ts';
import { EmbeddedPostgresInUseError, startEmbeddedPostgres } from './db/embedded.ts';
import { findMigrationsFolder, runMigrations } from './db/migrate.ts';
import { APP_ROLE_PASSWORD_PURPOSE, checkAppRole, provisionAppRole } from './db/roles.ts';
import { backfillRowMacs } from './db/row-mac-backfill.ts';
import { Metrics } from './metrics/metrics.ts';
import { Tracing, traceQueries } from './ops/tracing.ts';
import { ensurePlatformAdmin } from './tenants/bootstrap.ts';

export interface RunningServer {
  app: FastifyInstance;
  url: string;
  /** Graceful: stop accepting, finish in-flight requests, flush audit, close the pool, stop embedded Postgres. */
  close(): Promise<void>;
}

export class StartupError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('\n'));
  }
}

/**
 * Everything between a parsed config and a listening server: database (embedded when no DATABASE_URL),
 * migrations, the restricted query role and its safety check, the platform admin, the app.
 */
export async function startServer(
  config: Config,
  log: Logger,
  o: { terminalLog?: boolean } = {},
): Promise<RunningServer> {
  if (!config.masterKeys || !config.jwtPrivateKey) throw new StartupError(['keys are missing from the configuration']);
  const keyring = new MasterKeyring(config.masterKeys);
  const signingKeys = new SigningKeys(config.jwtPrivateKey, config.jwtPreviousPublicKeys);
  const migrationsFolder = findMigrationsFolder();
  const closers: (() => Promise<void>)[] = [];
  const closeAll = async () => {
    for (const c of closers.splice(0).reverse()) await c().catch((err) => log.error({ err }, 'error while closing'));
  };

  // Started first so it is stopped last, after the app has flushed its final spans.
  const tracing = config.tracing ? Tracing.start(config.tracing) : null;
  if (tracing) closers.push(() => tracing.shutdown());

  try {
    let ownerUrl = config.databaseUrl;
    if (!ownerUrl && !config.appDatabaseUrl) {
      const dir = path.join(config.dataDir, 'postgres');
      log.info({ dir, port: config.embeddedPgPort }, 'no DATABASE_URL: starting embedded PostgreSQL');
      const embedded = await startEmbeddedPostgres({
        dir,
        port: config.embeddedPgPort,
        onLog: (line) => log.debug({ postgres: line }, 'postgres'),
        // A server owns its database: sharing one another server started would leave it stopped under us.
        whenInUse: 'refuse',
      }).catch((err: unknown) => {
        throw err instanceof EmbeddedPostgresInUseError ? new StartupError([err.message]) : err;
      });
      closers.push(() => embedded.stop());
      ownerUrl = embedded.url;
    }

    if (config.autoMigrate && ownerUrl) {
      await runMigrations(ownerUrl, migrationsFolder);
      log.info('migrations applied');
    }

    // Without a URL for the query role, the owner gives coffer_app LOGIN and a password derived from the master key.
    const appUrl =
      config.appDatabaseUrl ??
      (await provisionAppRole(ownerUrl as string, keyring.derive(APP_ROLE_PASSWORD_PURPOSE).toString('base64url')));
    const pool = createPool({
      url: appUrl,
      max: config.dbPoolMax,
      acquireTimeoutMs: config.dbAcquireTimeoutMs,
      statementTimeoutMs: config.dbStatementTimeoutMs,
      lockTimeoutMs: config.dbLockTimeoutMs,
      applicationName: 'coffer-api',
      preparedStatements: config.dbPreparedStatements,
      onError: (err) => log.warn({ err: { message: err.message } }, 'idle database connection lost'),
    });
    if (tracing) traceQueries(pool, tracing.tracer);
    const db = new Database(pool);
    closers.push(() => db.close());

    const problems = await checkAppRole(pool);
    if (problems.length > 0) throw new StartupError(problems.map((p) => `unsafe database role: ${p}`));

    const macs = new RowMacs(keyring);
    await ensurePlatformAdmin(db, { bootstrapSecret: config.bootstrapSecret, dataDir: config.dataDir, log, macs });
    // Rows that predate the row MACs get theirs before the first request, so none is served unchecked.
    const backfilled = await backfillRowMacs(db, macs, linkKeys(keyring));
    if (backfilled.rows > 0) log.info(backfilled, 'MACed the rows that predate the row MACs');

    const metrics = new Metrics({ tenantLabels: config.metricsTenantLabels });
    const app = await buildApp({
      config,
      db,
      keyring,
      signingKeys,
      logger: log,
      migrationsFolder,
      startJobs: true,
      metrics,
      terminalLog: o.terminalLog === true,
      ...(tracing ? { tracer: tracing.tracer } : {}),
    });
    closers.push(() => app.close());
    if (config.metricsPort) {
      // A listener with nothing but /metrics, for a scrape from inside the cluster (no token needed there).
      const metricsServer = Fastify({ logger: false });
      metricsServer.get('/metrics', async (_request, reply) => {
        reply.type(metrics.registry.contentType);
        return metrics.registry.metrics();
      });
      await metricsServer.listen({ host: config.metricsHost, port: config.metricsPort });
      closers.push(() => metricsServer.close());
    }
    // Fastify's own "Server listening at" line is the one start-up line, so it says what a new user needs next:
    // where the API reference is and how to log in (main.ts no longer repeats it).
    const url = await app.listen({
      host: config.host,
      port: config.port,
      listenTextResolver: (address) =>
        `coffer is listening at ${address}; API reference: ${address}/docs; log in: coffer login --url ${address} --client-id <id>`,
    });
    return { app, url, close: closeAll };
  } catch (err) {
    await closeAll();
    throw err;
  }
}
