import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { inject } from 'vitest';
import { buildApp } from '../../apps/api/src/app.ts';
import { SigningKeys } from '../../apps/api/src/auth/signing-keys.ts';
import { type Config, loadConfig } from '../../apps/api/src/config.ts';
import { MasterKeyring } from '../../apps/api/src/crypto/keyring.ts';
import { RowMacs } from '../../apps/api/src/crypto/row-macs.ts';
import { createPool, Database } from '../../apps/api/src/db/database.ts';
import { findMigrationsFolder } from '../../apps/api/src/db/migrate.ts';
import { loggerOptions } from '../../apps/api/src/logger.ts';

export interface TestApp {
  app: FastifyInstance;
  db: Database;
  config: Config;
  /**
   * The row MACs under this app's keyring: for code the test calls outside the app (bootstrap, break-glass, the
   * backfill) and for writes a test makes as the API would, where no route makes them at the wanted moment.
   */
  macs: RowMacs;
  /** Every log line the app wrote (kept in memory, never printed), for leak checks. */
  logs: string[];
  close(): Promise<void>;
}

/** The environment a test app starts from: the test database and the keys made by the global setup. */
export function testEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    NODE_ENV: 'test',
    LOG_LEVEL: 'debug',
    DATABASE_URL: inject('ownerDatabaseUrl'),
    DATABASE_APP_URL: inject('appDatabaseUrl'),
    COFFER_MASTER_KEYS: inject('masterKeys'),
    COFFER_JWT_PRIVATE_KEY: inject('jwtPrivateKeyPem'),
    COFFER_DB_POOL_MAX: '10',
    ...extra,
  };
}

/** A full app on the real test database, parsed from an environment exactly as main.ts does. */
export async function createTestApp(extraEnv: Record<string, string> = {}): Promise<TestApp> {
  const parsed = loadConfig(testEnv(extraEnv));
  if (!parsed.ok) throw new Error(parsed.problems.join('\n'));
  const config = parsed.config;
  const logs: string[] = [];
  const logger = pino(loggerOptions(config.logLevel, false), { write: (line: string) => void logs.push(line) });
  const db = new Database(
    createPool({
      url: config.appDatabaseUrl as string,
      max: config.dbPoolMax,
      acquireTimeoutMs: config.dbAcquireTimeoutMs,
      statementTimeoutMs: config.dbStatementTimeoutMs,
      lockTimeoutMs: config.dbLockTimeoutMs,
      applicationName: 'coffer-test',
      onError: () => undefined,
      preparedStatements: config.dbPreparedStatements,
    }),
  );
  const keyring = new MasterKeyring(config.masterKeys ?? []);
  const app = await buildApp({
    config,
    db,
    keyring,
    signingKeys: new SigningKeys(
      config.jwtPrivateKey as NonNullable<Config['jwtPrivateKey']>,
      config.jwtPreviousPublicKeys,
    ),
    logger,
    migrationsFolder: findMigrationsFolder(),
  });
  await app.ready();
  return {
    app,
    db,
    config,
    macs: new RowMacs(keyring),
    logs,
    async close() {
      await app.close();
      await db.close();
    },
  };
}
