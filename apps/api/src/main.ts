import closeWithGrace from 'close-with-grace';
import { loadConfig, processEnv } from './config.ts';
import { runMigrations } from './db/migrate.ts';
import { provisionAppRole } from './db/roles.ts';
import { withDevelopmentKeys } from './dev-keys.ts';
import { createLogger } from './logger.ts';
import { StartupError, startServer } from './server.ts';

/** The process entry point: parse config, start, and shut down gracefully on SIGINT/SIGTERM. */
async function main(): Promise<void> {
  const parsed = loadConfig(processEnv());
  if (!parsed.ok) {
    process.stderr.write(`coffer: cannot start, the configuration has ${parsed.problems.length} problem(s):\n`);
    for (const p of parsed.problems) process.stderr.write(`  - ${p}\n`);
    process.exitCode = 1;
    return;
  }
  const log = createLogger(parsed.config.logLevel, process.stdout.isTTY === true && parsed.config.env !== 'production');
  if (process.argv[2] === 'migrate') {
    // `node dist/main.js migrate`: apply migrations as the owner and exit (a Kubernetes Job, a release step).
    if (!parsed.config.databaseUrl) {
      log.fatal('migrate needs DATABASE_URL, a connection as the schema owner');
      process.exitCode = 1;
      return;
    }
    await runMigrations(parsed.config.databaseUrl);
    log.info('migrations applied');
    if (parsed.config.appRolePassword) {
      // For deployments that reach the database through PgBouncer: the query role gets the password you chose.
      await provisionAppRole(parsed.config.databaseUrl, parsed.config.appRolePassword);
      log.info('the coffer_app role can log in with COFFER_APP_ROLE_PASSWORD');
    }
    return;
  }
  let server: Awaited<ReturnType<typeof startServer>>;
  try {
    server = await startServer(withDevelopmentKeys(parsed.config, log), log);
  } catch (err) {
    if (err instanceof StartupError) {
      for (const p of err.problems) log.fatal(p);
    } else {
      log.fatal({ err }, 'cannot start');
    }
    process.exitCode = 1;
    return;
  }
  log.info({ url: server.url }, 'coffer is listening');

  closeWithGrace({ delay: parsed.config.shutdownTimeoutMs }, async ({ signal, err }) => {
    if (err) log.error({ err }, 'shutting down after an error');
    else log.info({ signal }, 'shutting down: finishing in-flight requests');
    await server.close();
    log.info('stopped');
  });
}

void main();
