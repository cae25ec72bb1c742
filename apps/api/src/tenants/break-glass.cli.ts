// `npm run platform:reset-root`: break-glass reset of root's secret, as the database owner (docs/platform-admin.md).
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { linkKeys } from '../audit/audit.digest.ts';
import { loadConfig, processEnv } from '../config.ts';
import { MasterKeyring } from '../crypto/keyring.ts';
import { RowMacs } from '../crypto/row-macs.ts';
import { createPool, Database } from '../db/database.ts';
import { withDevelopmentKeys } from '../dev-keys.ts';
import { resetRootSecret } from './break-glass.ts';

const parsed = loadConfig(processEnv());
if (!parsed.ok) {
  for (const p of parsed.problems) process.stderr.write(`coffer: ${p}\n`);
  process.exit(1);
}
// In development the keys the server generated into the data folder serve; none is ever generated here.
const config =
  !parsed.config.masterKeys &&
  parsed.config.env !== 'production' &&
  existsSync(path.join(parsed.config.dataDir, 'dev-keys.json'))
    ? withDevelopmentKeys(parsed.config, pino({ enabled: false }))
    : parsed.config;
if (!config.databaseUrl) {
  process.stderr.write('coffer: platform:reset-root needs DATABASE_URL, a connection as the schema owner\n');
  process.exit(1);
}
if (!config.masterKeys) {
  process.stderr.write(
    "coffer: platform:reset-root needs the master keyring (COFFER_MASTER_KEYS or COFFER_MASTER_KEYS_FILE): the reset's audit event is chained, and root's row MACed, under keys derived from it\n",
  );
  process.exit(1);
}
const keyring = new MasterKeyring(config.masterKeys);
const macs = new RowMacs(keyring);
const db = new Database(
  createPool({
    url: config.databaseUrl,
    max: 1,
    acquireTimeoutMs: 10_000,
    statementTimeoutMs: 30_000,
    applicationName: 'coffer-break-glass',
    onError: () => undefined,
  }),
);
try {
  const { credentialsFile, created } = await resetRootSecret(db, {
    dataDir: config.dataDir,
    operator: os.userInfo().username,
    linkKey: linkKeys(keyring),
    macs,
  });
  process.stdout.write(
    `coffer: root ${created ? 'was created again' : 'has a new client secret and is enabled'}; the secret is in ${credentialsFile} (mode 0600): store it in a vault, delete the file, then rotate it through the API\n`,
  );
} finally {
  await db.close();
}
