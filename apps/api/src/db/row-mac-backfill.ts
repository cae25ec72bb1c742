import { PLATFORM_TENANT_ID } from '@coffer/contracts';
import { and, eq, inArray } from 'drizzle-orm';
import type { LinkKeys } from '../audit/audit.digest.ts';
import { appendInTx } from '../audit/audit.writer.ts';
import type { RowMacs } from '../crypto/row-macs.ts';
import { sealIdentity } from '../identities/identities.queries.ts';
import type { SecretRow } from '../secrets/secrets.queries.ts';
import { secretMacFields } from '../secrets/secrets.queries.ts';
import { sealIssuer } from '../trust/trust.queries.ts';
import type { Database } from './database.ts';
import { identities, rowMacBackfill, secrets, secretVersions, trustedIssuers } from './schema.ts';

/**
 * The one-time MACing of rows that predate the row MACs. The `row_macs` migration listed them in
 * coffer.row_mac_backfill (as the owner; coffer_app may only read and delete that list), so only those rows are
 * MACed, as they are now; a row with no MAC that is not listed fails its check on use. Runs at start, before the app serves, and is idempotent
 * (replicas starting together compute the same MACs; coffer_app cannot lock the list, it has no UPDATE on it):
 * each tenant's rows and its list entries change in one transaction, with an audit event that counts them.
 */
export async function backfillRowMacs(
  db: Database,
  macs: RowMacs,
  linkKey: LinkKeys,
): Promise<{ tenants: number; rows: number }> {
  const tenants = await db.withTenant(PLATFORM_TENANT_ID, (tx) =>
    tx.selectDistinct({ tenantId: rowMacBackfill.tenantId }).from(rowMacBackfill),
  );
  let rows = 0;
  for (const { tenantId } of tenants) {
    rows += await db.withTenant(tenantId, async (tx) => {
      const pending = await tx.select().from(rowMacBackfill).where(eq(rowMacBackfill.tenantId, tenantId));
      const secretIds = pending.filter((p) => p.rowKind === 'secret').map((p) => p.rowId);
      const listed: SecretRow[] =
        secretIds.length > 0 ? await tx.select().from(secrets).where(inArray(secrets.id, secretIds)) : [];
      for (const row of listed) {
        await tx
          .update(secrets)
          .set({ mac: macs.secret(secretMacFields(row)) })
          .where(eq(secrets.id, row.id));
      }
      for (const p of pending.filter((x) => x.rowKind === 'version')) {
        const [v] = await tx
          .select({ servedUntil: secretVersions.servedUntil })
          .from(secretVersions)
          .where(and(eq(secretVersions.secretId, p.rowId), eq(secretVersions.version, p.version)));
        if (!v) continue;
        await tx
          .update(secretVersions)
          .set({ mac: macs.version({ tenantId, secretId: p.rowId, version: p.version, servedUntil: v.servedUntil }) })
          .where(and(eq(secretVersions.secretId, p.rowId), eq(secretVersions.version, p.version)));
      }
      const identityIds = pending.filter((p) => p.rowKind === 'identity').map((p) => p.rowId);
      if (identityIds.length > 0) {
        for (const row of await tx.select().from(identities).where(inArray(identities.id, identityIds))) {
          await sealIdentity(tx, macs, row);
        }
      }
      const issuerIds = pending.filter((p) => p.rowKind === 'issuer').map((p) => p.rowId);
      if (issuerIds.length > 0) {
        for (const row of await tx.select().from(trustedIssuers).where(inArray(trustedIssuers.id, issuerIds))) {
          await sealIssuer(tx, macs, row);
        }
      }
      await tx.delete(rowMacBackfill).where(eq(rowMacBackfill.tenantId, tenantId));
      // The owner can list rows too: whatever the backfill blesses is in the tenant's audit chain, in this transaction.
      const kinds = (k: string) => pending.filter((p) => p.rowKind === k).length;
      await appendInTx(
        tx,
        [
          {
            tenantId,
            occurredAt: new Date(),
            actorId: null,
            actorName: null,
            action: 'system.row_macs.backfill',
            resource: 'row-macs',
            version: null,
            outcome: 'allowed',
            errorCode: null,
            requestId: null,
            sourceIp: null,
            userAgent: null,
            fingerprint: null,
            details: {
              secrets: kinds('secret'),
              versions: kinds('version'),
              identities: kinds('identity'),
              issuers: kinds('issuer'),
            },
          },
        ],
        linkKey,
      );
      return pending.length;
    });
  }
  return { tenants: tenants.length, rows };
}
