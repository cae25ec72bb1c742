import { PLATFORM_TENANT_ID } from '@coffer/contracts';
import { and, asc, eq, gt, inArray, or, type SQL, sql } from 'drizzle-orm';
import type { MasterKeyring } from '../crypto/keyring.ts';
import { macKeyIdSql, type RowMacs } from '../crypto/row-macs.ts';
import { deploymentMacFields, sealDeployment } from '../deployments/deployments.queries.ts';
import { identityMacFields, sealIdentity } from '../identities/identities.queries.ts';
import { secretMacFields, versionMacFields } from '../secrets/secrets.queries.ts';
import { issuerMacFields, sealIssuer } from '../trust/trust.queries.ts';
import type { Database } from './database.ts';
import {
  deploymentItems,
  deployments,
  identities,
  secrets,
  secretVersions,
  tenants,
  trustedIssuers,
} from './schema.ts';

/**
 * Row MACs across master-key rotation. A row MAC names the master key it was made under, so it keeps verifying
 * while that key is in the keyring; before an old key may leave, every MAC under it is made again under the active
 * key (after the old one checks out: a forged or edited row is left as it is, for its next read to refuse). The
 * rows live under forced row-level security that the platform scope cannot see through, so both walks go tenant by
 * tenant, one short transaction per batch, and resume where they stopped.
 */

const keyIdOf = (column: string): SQL => sql.raw(macKeyIdSql(column));

async function tenantIds(db: Pick<Database, 'withTenant'>): Promise<string[]> {
  const rows = await db.withTenant(PLATFORM_TENANT_ID, (t) => t.select({ id: tenants.id }).from(tenants));
  return rows.map((r) => r.id);
}

/** How many row MACs each master key made (secrets, versions, identities, trusted issuers, deployments of every tenant). */
export async function rowMacCensus(db: Pick<Database, 'withTenant'>): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const tenantId of await tenantIds(db)) {
    const { rows } = await db.withTenant(tenantId, (t) =>
      t.execute<{ id: string; n: string }>(sql`
        select id, count(*) as n from (
          select ${keyIdOf('mac')} as id from coffer.secrets where mac is not null
          union all select ${keyIdOf('mac')} from coffer.secret_versions where mac is not null
          union all select ${keyIdOf('mac')} from coffer.identities where mac is not null
          union all select ${keyIdOf('mac')} from coffer.trusted_issuers where mac is not null
          union all select ${keyIdOf('mac')} from coffer.deployments where mac is not null) m
        where id is not null group by 1`),
    );
    for (const r of rows) out.set(r.id, (out.get(r.id) ?? 0) + Number(r.n));
  }
  return out;
}

/** Re-MACs, under the active master key, every row MAC made under another key of the keyring that still verifies. */
export async function resignRowMacs(
  db: Pick<Database, 'withTenant'>,
  keyring: Pick<MasterKeyring, 'activeId' | 'ids'>,
  macs: RowMacs,
  batch: number,
): Promise<{ resigned: number; refused: number }> {
  const done = { resigned: 0, refused: 0 };
  const count = (ok: boolean) => {
    if (ok) done.resigned++;
    else done.refused++;
  };
  const older = (column: string) =>
    sql`${keyIdOf(column)} <> ${keyring.activeId} and ${keyIdOf(column)} = any(${sql.param(keyring.ids)}::text[])`;

  for (const tenantId of await tenantIds(db)) {
    for (let after: string | undefined; ; ) {
      const rows = await db.withTenant(tenantId, async (t) => {
        const page = await t
          .select()
          .from(secrets)
          .where(and(older('mac'), after ? gt(secrets.id, after) : undefined))
          .orderBy(asc(secrets.id))
          .limit(batch)
          .for('update', { skipLocked: true });
        for (const row of page) {
          const fields = secretMacFields(row);
          const ok = macs.secretVerifies(row.mac, fields);
          if (ok)
            await t
              .update(secrets)
              .set({ mac: macs.secret(fields) })
              .where(eq(secrets.id, row.id));
          count(ok);
        }
        return page;
      });
      after = rows.at(-1)?.id;
      if (rows.length < batch) break;
    }

    for (let after: { secretId: string; version: number } | undefined; ; ) {
      const rows = await db.withTenant(tenantId, async (t) => {
        const page = await t
          .select({
            secretId: secretVersions.secretId,
            version: secretVersions.version,
            servedUntil: secretVersions.servedUntil,
            revokedAt: secretVersions.revokedAt,
            deploymentId: secretVersions.deploymentId,
            mac: secretVersions.mac,
          })
          .from(secretVersions)
          .where(
            and(
              older('mac'),
              after
                ? or(
                    gt(secretVersions.secretId, after.secretId),
                    and(eq(secretVersions.secretId, after.secretId), gt(secretVersions.version, after.version)),
                  )
                : undefined,
            ),
          )
          .orderBy(asc(secretVersions.secretId), asc(secretVersions.version))
          .limit(batch)
          .for('update', { skipLocked: true });
        for (const v of page) {
          const fields = versionMacFields(tenantId, v);
          const ok = macs.versionVerifies(v.mac, fields);
          if (ok) {
            await t
              .update(secretVersions)
              .set({ mac: macs.version(fields) })
              .where(and(eq(secretVersions.secretId, v.secretId), eq(secretVersions.version, v.version)));
          }
          count(ok);
        }
        return page;
      });
      const last = rows.at(-1);
      after = last ? { secretId: last.secretId, version: last.version } : undefined;
      if (rows.length < batch) break;
    }

    for (let after: string | undefined; ; ) {
      const rows = await db.withTenant(tenantId, async (t) => {
        const page = await t
          .select()
          .from(identities)
          .where(and(older('mac'), after ? gt(identities.id, after) : undefined))
          .orderBy(asc(identities.id))
          .limit(batch)
          .for('update', { skipLocked: true });
        for (const row of page) {
          const ok = macs.identityVerifies(row.mac, identityMacFields(row));
          // Sealing bumps the revision (the trigger), so cached principals reload: nothing else changes for them.
          if (ok) await sealIdentity(t, macs, row);
          count(ok);
        }
        return page;
      });
      after = rows.at(-1)?.id;
      if (rows.length < batch) break;
    }

    for (let after: string | undefined; ; ) {
      const rows = await db.withTenant(tenantId, async (t) => {
        const page = await t
          .select()
          .from(trustedIssuers)
          .where(and(older('mac'), after ? gt(trustedIssuers.id, after) : undefined))
          .orderBy(asc(trustedIssuers.id))
          .limit(batch)
          .for('update', { skipLocked: true });
        for (const row of page) {
          const ok = macs.issuerVerifies(row.mac, issuerMacFields(row));
          if (ok) await sealIssuer(t, macs, row);
          count(ok);
        }
        return page;
      });
      after = rows.at(-1)?.id;
      if (rows.length < batch) break;
    }

    for (let after: string | undefined; ; ) {
      const rows = await db.withTenant(tenantId, async (t) => {
        const page = await t
          .select()
          .from(deployments)
          .where(and(older('mac'), after ? gt(deployments.id, after) : undefined))
          .orderBy(asc(deployments.id))
          .limit(batch)
          .for('update', { skipLocked: true });
        const plans =
          page.length > 0
            ? await t
                .select()
                .from(deploymentItems)
                .where(
                  inArray(
                    deploymentItems.deploymentId,
                    page.map((d) => d.id),
                  ),
                )
            : [];
        for (const d of page) {
          const ok = macs.deploymentVerifies(d.mac, deploymentMacFields(d, plans));
          if (ok) await sealDeployment(t, macs, d, plans);
          count(ok);
        }
        return page;
      });
      after = rows.at(-1)?.id;
      if (rows.length < batch) break;
    }
  }
  return done;
}
