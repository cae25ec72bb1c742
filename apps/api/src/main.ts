import closeWithGrace from 'close-with-grace';
import { loadConfig, processEnv } from './config.ts';
import { runMigrations } from './db/migrate.ts';
import { provisionAppRole } from './db/roles.ts';
import { withDevelopmentKeys } from './dev-keys.ts';
import { createLogger } from './logger.ts';
import { detachFromTerminal, terminalStreams } from './ops/terminal.ts';
import { StartupError, startServer } from './server.ts';

const terminal = terminalStreams();

/** The process entry point: parse config, start, and shut down gracefully on SIGINT, SIGTERM or SIGHUP. */
async function main(): Promise<void> {
  // Until it has started (or migrated), an event loop that runs dry means a start that stalled: that is a failure.
  process.exitCode = 1;
  const parsed = loadConfig(processEnv());
  if (!parsed.ok) {
    process.stderr.write(`coffer: cannot start, the configuration has ${parsed.problems.length} problem(s):\n`);
    for (const p of parsed.problems) process.stderr.write(`  - ${p}\n`);
    process.exit(1);
  }
  const pretty = process.stdout.isTTY === true && parsed.config.env !== 'production';
  const log = createLogger(parsed.config.logLevel, pretty);
  if (process.argv[2] === 'migrate') {
    // `node dist/main.js migrate`: apply migrations as the owner and exit (a Kubernetes Job, a release step).
    if (!parsed.config.databaseUrl) {
      log.fatal('migrate needs DATABASE_URL, a connection as the schema owner');
      process.exit(1);
    }
    await runMigrations(parsed.config.databaseUrl);
    log.info('migrations applied');
    if (parsed.config.appRolePassword) {
      // For deployments that reach the database through PgBouncer: the query role gets the password you chose.
      await provisionAppRole(parsed.config.databaseUrl, parsed.config.appRolePassword);
      log.info('the coffer_app role can log in with COFFER_APP_ROLE_PASSWORD');
    }
    process.exitCode = 0;
    return;
  }
  // A signal during start-up ends the start at once; the embedded PostgreSQL is stopped by its exit hook.
  const signals = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 } as const;
  const duringStart = (signal: NodeJS.Signals) => {
    if (signal === 'SIGHUP') detachFromTerminal(terminal);
    process.exit(128 + (signals[signal as keyof typeof signals] ?? 0));
  };
  for (const signal of Object.keys(signals)) process.once(signal, duringStart);
  let server: Awaited<ReturnType<typeof startServer>>;
  try {
    server = await startServer(withDevelopmentKeys(parsed.config, log), log, { terminalLog: pretty });
  } catch (err) {
    if (err instanceof StartupError) {
      for (const p of err.problems) log.fatal(p);
    } else {
      log.fatal({ err }, 'cannot start');
    }
    // Exit now: a handle left open by a half-started dependency must not keep a failed start alive.
    process.exit(1);
  }
  for (const signal of Object.keys(signals)) process.removeListener(signal, duringStart);
  process.exitCode = 0;

  // Registered before closeWithGrace's handler so that it runs first, before the shutdown writes a line.
  process.once('SIGHUP', () => detachFromTerminal(terminal));

  closeWithGrace({ delay: parsed.config.shutdownTimeoutMs }, async ({ signal, err }) => {
    if (err) log.error({ err }, 'shutting down after an error');
    else log.info({ signal }, 'shutting down: finishing in-flight requests');
    await server.close();
    log.info('stopped');
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`coffer: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
