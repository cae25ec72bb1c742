import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PLATFORM_TENANT_ID } from '@coffer/contracts';
import { sql } from 'drizzle-orm';
import type { Logger } from 'pino';
import { hashClientSecret } from '../crypto/client-secret-hash.ts';
import { newClientSecret, newId } from '../crypto/ids.ts';
import type { RowMacs } from '../crypto/row-macs.ts';
import type { Database } from '../db/database.ts';
import { identities } from '../db/schema.ts';
import { sealIdentity } from '../identities/identities.queries.ts';

export const ROOT_CLIENT_ID = 'root';

/**
 * On first start with an empty database, create the platform admin `root`. Its secret comes from
 * COFFER_BOOTSTRAP_SECRET, or is generated and written to a file only the owner can read; the log says where,
 * never what. Safe when several replicas start at once: only the one whose insert lands writes the file.
 */
export async function ensurePlatformAdmin(
  db: Database,
  o: { bootstrapSecret: string | null; dataDir: string; log: Logger; macs: RowMacs },
): Promise<{ created: boolean; credentialsFile?: string }> {
  const exists = await db.withTenant(PLATFORM_TENANT_ID, (tx) =>
    tx.select({ id: identities.id }).from(identities).where(sql`${identities.clientId} = ${ROOT_CLIENT_ID}`),
  );
  if (exists.length > 0) return { created: false };

  const secret = o.bootstrapSecret ?? newClientSecret();
  const secretHash = await hashClientSecret(secret);
  const inserted = await db.withTenant(PLATFORM_TENANT_ID, (tx) =>
    tx
      .insert(identities)
      .values({
        id: newId(),
        tenantId: PLATFORM_TENANT_ID,
        clientId: ROOT_CLIENT_ID,
        name: 'root',
        role: 'platform',
        secretHash,
      })
      .onConflictDoNothing()
      .returning()
      .then((rows) => Promise.all(rows.map((row) => sealIdentity(tx, o.macs, row)))),
  );
  if (inserted.length === 0) return { created: false };

  if (o.bootstrapSecret) {
    o.log.info({ clientId: ROOT_CLIENT_ID }, 'created the platform admin with the secret from COFFER_BOOTSTRAP_SECRET');
    return { created: true };
  }
  mkdirSync(o.dataDir, { recursive: true });
  const file = path.join(o.dataDir, 'bootstrap-credentials.json');
  writeFileSync(
    file,
    `${JSON.stringify({ clientId: ROOT_CLIENT_ID, clientSecret: secret, createdAt: new Date().toISOString() }, null, 2)}\n`,
    { mode: 0o600 },
  );
  chmodSync(file, 0o600);
  o.log.warn(
    { clientId: ROOT_CLIENT_ID, credentialsFile: file },
    'created the platform admin; its client secret is in the credentials file (readable only by this user): store it in a vault and delete the file',
  );
  return { created: true, credentialsFile: file };
}
