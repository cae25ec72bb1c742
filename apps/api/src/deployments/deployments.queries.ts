import type { SecretKind } from '@coffer/contracts';
import { and, asc, desc, eq, gt, inArray, isNotNull, isNull, lt, or, sql } from 'drizzle-orm';
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

/** Data access for deployments. Every function takes the tenant first and an optional transaction last. */
export function deploymentQueries(db: Database) {
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

    insertItems(
      tenantId: string,
      items: Omit<typeof deploymentItems.$inferInsert, 'tenantId'>[],
      tx: Tx,
    ): Promise<void> {
      if (items.length === 0) return Promise.resolve();
      return db.inTenant(tenantId, tx, async (t) => {
        await t.insert(deploymentItems).values(items.map((i) => ({ ...i, tenantId })));
      });
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

    /** The versions generated for a deployment, by secret. */
    generatedVersions(
      tenantId: string,
      deploymentId: string,
      tx: Tx,
    ): Promise<{ secretId: string; version: number; revokedAt: Date | null }[]> {
      return db.inTenant(tenantId, tx, (t) =>
        t
          .select({
            secretId: secretVersions.secretId,
            version: secretVersions.version,
            revokedAt: secretVersions.revokedAt,
          })
          .from(secretVersions)
          .where(and(eq(secretVersions.tenantId, tenantId), eq(secretVersions.deploymentId, deploymentId)))
          .orderBy(asc(secretVersions.secretId), asc(secretVersions.version)),
      );
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

    /** Live (unrevoked) deployments a version of a secret was generated for. */
    holders(
      tenantId: string,
      secretId: string,
      version: number,
      tx?: Tx,
    ): Promise<
      { id: string; name: string; createdAt: Date; createdBy: string | null; createdByName: string | null }[]
    > {
      return db.inTenant(tenantId, tx, (t) =>
        t
          .select({
            id: deployments.id,
            name: deployments.name,
            createdAt: deployments.createdAt,
            createdBy: deployments.createdBy,
            createdByName: deployments.createdByName,
          })
          .from(secretVersions)
          .innerJoin(deployments, eq(deployments.id, secretVersions.deploymentId))
          .where(
            and(
              eq(secretVersions.tenantId, tenantId),
              eq(secretVersions.secretId, secretId),
              eq(secretVersions.version, version),
              isNotNull(secretVersions.deploymentId),
              isNull(deployments.revokedAt),
            ),
          ),
      );
    },

    markRevoked(
      tenantId: string,
      id: string,
      revokedAt: Date,
      revocation: Record<string, unknown>,
      tx: Tx,
    ): Promise<DeploymentRow> {
      return db.inTenant(tenantId, tx, async (t) => {
        const [row] = await t
          .update(deployments)
          .set({ revokedAt, revocation })
          .where(eq(deployments.id, id))
          .returning();
        return row as DeploymentRow;
      });
    },
  };
}

export type DeploymentQueries = ReturnType<typeof deploymentQueries>;
