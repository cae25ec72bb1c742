import type { SecretKind } from '@coffer/contracts';
import { and, asc, desc, eq, gt, inArray, isNull, lt, or, sql } from 'drizzle-orm';
import type { DeploymentMacFields, RowMacs } from '../crypto/row-macs.ts';
import type { Database, Tx } from '../db/database.ts';
import { deploymentItems, deploymentReceipts, deployments, secrets, secretVersions } from '../db/schema.ts';
import type { SecretRow } from '../secrets/secrets.queries.ts';

export type DeploymentRow = typeof deployments.$inferSelect;
export type DeploymentItemRow = typeof deploymentItems.$inferSelect;
export type DeploymentReceiptRow = typeof deploymentReceipts.$inferSelect;

export interface BundleOwner {
  kind: SecretKind;
  owner: string;
}

/** A version's columns that its MAC covers, with the MAC. */
export interface VersionMacRow {
  secretId: string;
  version: number;
  servedUntil: Date | null;
  revokedAt: Date | null;
  deploymentId: string | null;
  mac: string | null;
}

const versionMacColumns = {
  secretId: secretVersions.secretId,
  version: secretVersions.version,
  servedUntil: secretVersions.servedUntil,
  revokedAt: secretVersions.revokedAt,
  deploymentId: secretVersions.deploymentId,
  mac: secretVersions.mac,
};

/** The columns of a deployment and of its plan that the deployment's MAC covers. */
export function deploymentMacFields(d: DeploymentRow, items: readonly DeploymentItemRow[]): DeploymentMacFields {
  return {
    tenantId: d.tenantId,
    id: d.id,
    name: d.name,
    environment: d.environment,
    tier: d.tier,
    bundles: d.bundles,
    createdBy: d.createdBy,
    revokedAt: d.revokedAt,
    revocation: d.revocation ?? null,
    items: items
      .filter((i) => i.deploymentId === d.id)
      .map((i) => ({
        position: i.position,
        secretId: i.secretId,
        kind: i.kind,
        owner: i.owner,
        name: i.name,
        action: i.action,
        reason: i.reason,
        class: i.class ?? null,
        version: i.version ?? null,
        prompt: i.prompt ?? null,
      })),
  };
}

/** Every write of a deployment ends here: its MAC is made from the row and its plan as stored, in the same transaction. */
export async function sealDeployment(
  t: Tx,
  macs: Pick<RowMacs, 'deployment'>,
  d: DeploymentRow,
  items: readonly DeploymentItemRow[],
): Promise<DeploymentRow> {
  const mac = macs.deployment(deploymentMacFields(d, items));
  await t.update(deployments).set({ mac }).where(eq(deployments.id, d.id));
  return { ...d, mac };
}

/** Data access for deployments. Every function takes the tenant first and an optional transaction last. */
export function deploymentQueries(db: Database, macs: Pick<RowMacs, 'deployment'>) {
  return {
    /**
     * The live secrets (not deleted, not expired) of several owners in one environment, in (kind, owner, name)
     * order; locked when the deployment will write to them, in that one order, so concurrent deployments of
     * overlapping bundles cannot deadlock.
     */
    bundleSecrets(
      tenantId: string,
      environment: string,
      owners: readonly BundleOwner[],
      lock: boolean,
      tx: Tx,
    ): Promise<SecretRow[]> {
      return db.inTenant(tenantId, tx, async (t) => {
        const q = t
          .select()
          .from(secrets)
          .where(
            and(
              eq(secrets.environment, environment),
              or(...owners.map((o) => and(eq(secrets.kind, o.kind), eq(secrets.owner, o.owner)))),
              isNull(secrets.deletedAt),
              or(isNull(secrets.expiresAt), gt(secrets.expiresAt, sql`now()`)),
            ),
          )
          .orderBy(asc(secrets.kind), asc(secrets.owner), asc(secrets.name));
        return lock ? q.for('update') : q;
      });
    },

    insert(tenantId: string, row: Omit<typeof deployments.$inferInsert, 'tenantId'>, tx: Tx): Promise<DeploymentRow> {
      return db.inTenant(tenantId, tx, async (t) => {
        const [created] = await t
          .insert(deployments)
          .values({ ...row, tenantId })
          .returning();
        return created as DeploymentRow;
      });
    },

    /** The plan's rows as stored (what the deployment's MAC is made from). */
    insertItems(
      tenantId: string,
      items: Omit<typeof deploymentItems.$inferInsert, 'tenantId'>[],
      tx: Tx,
    ): Promise<DeploymentItemRow[]> {
      if (items.length === 0) return Promise.resolve([]);
      return db.inTenant(tenantId, tx, (t) =>
        t
          .insert(deploymentItems)
          .values(items.map((i) => ({ ...i, tenantId })))
          .returning(),
      );
    },

    /** MACs the deployment with its plan, once both are stored. */
    seal(tenantId: string, d: DeploymentRow, items: readonly DeploymentItemRow[], tx: Tx): Promise<DeploymentRow> {
      return db.inTenant(tenantId, tx, (t) => sealDeployment(t, macs, d, items));
    },

    /** One receipt per (secret, version, identity, via): a repeat read moves its last time on and counts it. */
    receive(
      tenantId: string,
      rows: Omit<typeof deploymentReceipts.$inferInsert, 'tenantId' | 'firstAt' | 'lastAt' | 'reads'>[],
      tx?: Tx,
    ): Promise<void> {
      if (rows.length === 0) return Promise.resolve();
      return db.inTenant(tenantId, tx, async (t) => {
        await t
          .insert(deploymentReceipts)
          .values(rows.map((r) => ({ ...r, tenantId })))
          .onConflictDoUpdate({
            target: [
              deploymentReceipts.deploymentId,
              deploymentReceipts.secretId,
              deploymentReceipts.version,
              deploymentReceipts.identityId,
              deploymentReceipts.via,
            ],
            set: {
              lastAt: sql`now()`,
              reads: sql`${deploymentReceipts.reads} + 1`,
              identityName: sql`excluded.identity_name`,
            },
          });
      });
    },

    get(tenantId: string, id: string, tx?: Tx, lock = false): Promise<DeploymentRow | undefined> {
      return db.inTenant(tenantId, tx, async (t) => {
        const q = t.select().from(deployments).where(eq(deployments.id, id));
        const [row] = lock ? await q.for('update') : await q;
        return row;
      });
    },

    items(tenantId: string, ids: readonly string[], tx?: Tx): Promise<DeploymentItemRow[]> {
      if (ids.length === 0) return Promise.resolve([]);
      return db.inTenant(tenantId, tx, (t) =>
        t
          .select()
          .from(deploymentItems)
          .where(inArray(deploymentItems.deploymentId, [...ids]))
          .orderBy(asc(deploymentItems.deploymentId), asc(deploymentItems.position)),
      );
    },

    receipts(tenantId: string, id: string, tx?: Tx): Promise<DeploymentReceiptRow[]> {
      return db.inTenant(tenantId, tx, (t) =>
        t
          .select()
          .from(deploymentReceipts)
          .where(eq(deploymentReceipts.deploymentId, id))
          .orderBy(asc(deploymentReceipts.path), asc(deploymentReceipts.version), asc(deploymentReceipts.firstAt)),
      );
    },

    /**
     * Newest first (ids are UUIDv7, in creation order), after the cursor's id; in one environment, and holding one
     * secret in its plan (generated or injected), when asked.
     */
    page(
      tenantId: string,
      f: { environment?: string | undefined; secret?: { kind: string; owner: string; name: string } | undefined },
      after: string | undefined,
      limit: number,
      tx?: Tx,
    ): Promise<DeploymentRow[]> {
      return db.inTenant(tenantId, tx, (t) =>
        t
          .select()
          .from(deployments)
          .where(
            and(
              eq(deployments.tenantId, tenantId),
              f.environment !== undefined ? eq(deployments.environment, f.environment) : undefined,
              f.secret
                ? sql`exists (select 1 from coffer.deployment_items i where i.deployment_id = ${deployments.id}
                    and i.kind = ${f.secret.kind} and i.owner = ${f.secret.owner} and i.name = ${f.secret.name}
                    and i.action in ('generate', 'inject'))`
                : undefined,
              after !== undefined ? lt(deployments.id, after) : undefined,
            ),
          )
          .orderBy(desc(deployments.id))
          .limit(limit),
      );
    },

    /**
     * The versions generated for a deployment, by secret: those that name it, and those its plan names (so a version
     * whose deployment_id was cleared or changed is found too, and fails its MAC), each with its MAC.
     */
    generatedVersions(
      tenantId: string,
      deploymentId: string,
      planned: readonly { secretId: string; version: number }[],
      tx: Tx,
    ): Promise<VersionMacRow[]> {
      return db.inTenant(tenantId, tx, (t) =>
        t
          .select(versionMacColumns)
          .from(secretVersions)
          .where(
            and(
              eq(secretVersions.tenantId, tenantId),
              or(
                eq(secretVersions.deploymentId, deploymentId),
                ...planned.map((p) =>
                  and(eq(secretVersions.secretId, p.secretId), eq(secretVersions.version, p.version)),
                ),
              ),
            ),
          )
          .orderBy(asc(secretVersions.secretId), asc(secretVersions.version)),
      );
    },

    /** One version's covered columns and MAC. */
    async version(tenantId: string, secretId: string, version: number, tx?: Tx): Promise<VersionMacRow | undefined> {
      const [row] = await db.inTenant(tenantId, tx, (t) =>
        t
          .select(versionMacColumns)
          .from(secretVersions)
          .where(and(eq(secretVersions.secretId, secretId), eq(secretVersions.version, version))),
      );
      return row;
    },

    /**
     * Secrets by id, locked in (environment, kind, owner, name) order: the order deployments, bundle writes and
     * promotions lock in, so a revocation and a deployment of the same secrets cannot deadlock.
     */
    lockSecrets(tenantId: string, ids: readonly string[], tx: Tx): Promise<SecretRow[]> {
      if (ids.length === 0) return Promise.resolve([]);
      return db.inTenant(tenantId, tx, (t) =>
        t
          .select()
          .from(secrets)
          .where(inArray(secrets.id, [...ids]))
          .orderBy(asc(secrets.environment), asc(secrets.kind), asc(secrets.owner), asc(secrets.name))
          .for('update'),
      );
    },

    /** Marks the deployment revoked, and MACs it again with its plan (`items`, as checked). */
    markRevoked(
      tenantId: string,
      id: string,
      revokedAt: Date,
      revocation: Record<string, unknown>,
      items: readonly DeploymentItemRow[],
      tx: Tx,
    ): Promise<DeploymentRow> {
      return db.inTenant(tenantId, tx, async (t) => {
        const [row] = await t
          .update(deployments)
          .set({ revokedAt, revocation })
          .where(eq(deployments.id, id))
          .returning();
        return sealDeployment(t, macs, row as DeploymentRow, items);
      });
    },
  };
}

export type DeploymentQueries = ReturnType<typeof deploymentQueries>;
