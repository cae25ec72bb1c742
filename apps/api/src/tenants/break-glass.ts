import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PLATFORM_TENANT_ID } from '@coffer/contracts';
import { eq, sql } from 'drizzle-orm';
import type { LinkKeys } from '../audit/audit.digest.ts';
import { appendInTx } from '../audit/audit.writer.ts';
import { hashClientSecret } from '../crypto/client-secret-hash.ts';
import { newClientSecret, newId } from '../crypto/ids.ts';
import type { RowMacs } from '../crypto/row-macs.ts';
import type { Database } from '../db/database.ts';
import { identities } from '../db/schema.ts';
import { sealIdentity } from '../identities/identities.queries.ts';
import { ROOT_CLIENT_ID } from './bootstrap.ts';

/**
 * Break-glass recovery when every platform admin secret is lost (docs/platform-admin.md). Run by whoever holds
 * the database owner's credentials, never through the API: root gets a new secret (created again if it was
 * gone), is enabled, and every token it held stops; the secret goes to a file only this user can read, never to
 * the terminal or a log; the reset is an event in the platform's audit chain, in the same transaction (chained
 * under the platform's link key), and the row gets a fresh MAC: both need the master keyring as well as the owner's
 * credentials, by design.
 */
export async function resetRootSecret(
  db: Pick<Database, 'withTenant'>,
  o: { dataDir: string; operator: string; linkKey: LinkKeys; macs: RowMacs },
): Promise<{ credentialsFile: string; created: boolean }> {
  const clientSecret = newClientSecret();
  const secretHash = await hashClientSecret(clientSecret);
  const { id, created } = await db.withTenant(PLATFORM_TENANT_ID, async (tx) => {
    const [updated] = await tx
      .update(identities)
      .set({
        secretHash,
        disabled: false,
        credentialVersion: sql`${identities.credentialVersion} + 1`,
        secretRotatedAt: sql`now()`,
        updatedAt: sql`now()`,
      })
      .where(eq(identities.clientId, ROOT_CLIENT_ID))
      .returning();
    const row =
      updated ??
      (
        await tx
          .insert(identities)
          .values({
            id: newId(),
            tenantId: PLATFORM_TENANT_ID,
            clientId: ROOT_CLIENT_ID,
            name: 'root',
            role: 'platform',
            secretHash,
          })
          .returning()
      )[0];
    if (!row) throw new Error('root could not be written');
    // Root's row is MACed like any identity's (under the operator's keyring), or its next login is integrity_error.
    await sealIdentity(tx, o.macs, row);
    await appendInTx(
      tx,
      [
        {
          tenantId: PLATFORM_TENANT_ID,
          occurredAt: new Date(),
          actorId: null,
          actorName: null,
          action: 'platform.admins.break_glass',
          resource: `identities/${row.id}`,
          version: null,
          outcome: 'allowed',
          errorCode: null,
          requestId: null,
          sourceIp: null,
          userAgent: null,
          fingerprint: null,
          details: { operator: o.operator.slice(0, 64), created: !updated },
        },
      ],
      o.linkKey,
    );
    return { id: row.id, created: !updated };
  });
  mkdirSync(o.dataDir, { recursive: true, mode: 0o700 });
  const credentialsFile = path.join(o.dataDir, `break-glass-root-${Date.now()}.json`);
  writeFileSync(
    credentialsFile,
    `${JSON.stringify({ clientId: ROOT_CLIENT_ID, clientSecret, identityId: id, createdAt: new Date().toISOString() }, null, 2)}\n`,
    { mode: 0o600, flag: 'wx' },
  );
  chmodSync(credentialsFile, 0o600);
  return { credentialsFile, created };
}
