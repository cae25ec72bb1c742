import closeWithGrace from 'close-with-grace';
import { loadConfig, processEnv } from './config.ts';
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
