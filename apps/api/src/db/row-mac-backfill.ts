import { PLATFORM_TENANT_ID } from '@coffer/contracts';
import { and, eq, inArray } from 'drizzle-orm';
import type { LinkKeys } from '../audit/audit.digest.ts';
import { appendInTx } from '../audit/audit.writer.ts';
import type { RowMacs, SecretMacFields, VersionMacFields } from '../crypto/row-macs.ts';
import { sealDeployment } from '../deployments/deployments.queries.ts';
import { sealIdentity } from '../identities/identities.queries.ts';
import type { SecretRow } from '../secrets/secrets.queries.ts';
import { secretMacFields, versionMacFields } from '../secrets/secrets.queries.ts';
import { sealIssuer } from '../trust/trust.queries.ts';
import type { Database } from './database.ts';
import {
  deploymentItems,
  deployments,
  identities,
  rowMacBackfill,
  secrets,
  secretVersions,
  trustedIssuers,
} from './schema.ts';

/** The fields as a MAC made before the deployment columns were covered saw them: those columns at their default. */
const beforeDeploymentColumns = {
  secret: (f: SecretMacFields): SecretMacFields => ({
    ...f,
    class: null,
    strategy: null,
    ownerTeam: null,
    contact: null,
  }),
  version: (f: VersionMacFields): VersionMacFields => ({ ...f, revokedAt: null, deploymentId: null }),
};

/**
 * Whether a listed row that already has a MAC is MACed again: only when that MAC is one the API made before it
 * covered the deployment columns (it verifies with them at their default). A MAC that verifies as it is needs nothing;
 * one that verifies neither way is left, so the row keeps failing its check (coffer_app edited a covered column).
 */
function remac(
  verifies: (mac: string | null, legacy: boolean) => boolean,
  mac: string | null,
): 'make' | 'keep' | 'refuse' {
  if (mac === null) return 'make';
  if (verifies(mac, false)) return 'keep';
  return verifies(mac, true) ? 'make' : 'refuse';
}

/**
 * The one-time MACing of rows that predate the row MACs. The `row_macs` migration listed them in
 * coffer.row_mac_backfill (as the owner; coffer_app may only read and delete that list), so only those rows are
 * MACed, as they are now; a row with no MAC that is not listed fails its check on use. Runs at start, before the app serves, and is idempotent
 * (replicas starting together compute the same MACs; coffer_app cannot lock the list, it has no UPDATE on it):
 * each tenant's rows and its list entries change in one transaction, with an audit event that counts them. The
 * `deployment_macs` migration lists deployments (no MAC yet: MACed as they are, with their plan) and the secrets and
 * versions whose MAC predates the coverage of their deployment columns (MACed again only if that MAC still verifies,
 * so a covered column coffer_app changed before is not blessed; such a row is counted as `unverified`).
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
      let unverified = 0;
      const secretIds = pending.filter((p) => p.rowKind === 'secret').map((p) => p.rowId);
      const listed: SecretRow[] =
        secretIds.length > 0 ? await tx.select().from(secrets).where(inArray(secrets.id, secretIds)) : [];
      for (const row of listed) {
        const fields = secretMacFields(row);
        const step = remac(
          (mac, legacy) => macs.secretVerifies(mac, legacy ? beforeDeploymentColumns.secret(fields) : fields),
          row.mac,
        );
        if (step === 'refuse') unverified++;
        if (step !== 'make') continue;
        await tx
          .update(secrets)
          .set({ mac: macs.secret(fields) })
          .where(eq(secrets.id, row.id));
      }
      for (const p of pending.filter((x) => x.rowKind === 'version')) {
        const [v] = await tx
          .select({
            secretId: secretVersions.secretId,
            version: secretVersions.version,
            servedUntil: secretVersions.servedUntil,
            revokedAt: secretVersions.revokedAt,
            deploymentId: secretVersions.deploymentId,
            mac: secretVersions.mac,
          })
          .from(secretVersions)
          .where(and(eq(secretVersions.secretId, p.rowId), eq(secretVersions.version, p.version)));
        if (!v) continue;
        const fields = versionMacFields(tenantId, v);
        const step = remac(
          (mac, legacy) => macs.versionVerifies(mac, legacy ? beforeDeploymentColumns.version(fields) : fields),
          v.mac,
        );
        if (step === 'refuse') unverified++;
        if (step !== 'make') continue;
        await tx
          .update(secretVersions)
          .set({ mac: macs.version(fields) })
          .where(and(eq(secretVersions.secretId, p.rowId), eq(secretVersions.version, p.version)));
      }
      const deploymentIds = pending.filter((p) => p.rowKind === 'deployment').map((p) => p.rowId);
      if (deploymentIds.length > 0) {
        const plans = await tx
          .select()
          .from(deploymentItems)
          .where(inArray(deploymentItems.deploymentId, deploymentIds));
        for (const d of await tx.select().from(deployments).where(inArray(deployments.id, deploymentIds))) {
          // Deployments had no MAC before: one that has one now was sealed by the API since (or forged); leave it.
          if (d.mac === null) await sealDeployment(tx, macs, d, plans);
        }
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
              deployments: kinds('deployment'),
              unverified,
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
