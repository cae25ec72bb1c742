import { PLATFORM_TENANT_ID } from '@coffer/contracts';
import { and, asc, eq, gt, ne } from 'drizzle-orm';
import type { Database, Tx } from '../db/database.ts';
import { tenantKeys, tenants } from '../db/schema.ts';

export type TenantRow = typeof tenants.$inferSelect;
export type TenantKeyRow = typeof tenantKeys.$inferSelect;

/** Tenants are read in the platform scope (which sees them all) or in their own scope. */
export function tenantQueries(db: Database) {
  return {
    insert(row: typeof tenants.$inferInsert, tx?: Tx): Promise<TenantRow> {
      return db.inTenant(PLATFORM_TENANT_ID, tx, async (t) => {
        const [created] = await t.insert(tenants).values(row).returning();
        return created as TenantRow;
      });
    },

    page(after: string | undefined, limit: number, tx?: Tx): Promise<TenantRow[]> {
      return db.inTenant(PLATFORM_TENANT_ID, tx, (t) =>
        t
          .select()
          .from(tenants)
          .where(and(ne(tenants.id, PLATFORM_TENANT_ID), after ? gt(tenants.id, after) : undefined))
          .orderBy(asc(tenants.id))
          .limit(limit),
      );
    },

    /** Serialises changes that must see a consistent tenant (e.g. "keep at least one admin"). */
    async lock(tenantId: string, tx: Tx): Promise<void> {
      await db.inTenant(tenantId, tx, (t) =>
        t.select({ id: tenants.id }).from(tenants).where(eq(tenants.id, tenantId)).for('update'),
      );
    },

    insertKey(tenantId: string, key: Omit<typeof tenantKeys.$inferInsert, 'tenantId'>, tx?: Tx): Promise<void> {
      return db.inTenant(tenantId, tx, async (t) => {
        await t.insert(tenantKeys).values({ ...key, tenantId });
      });
    },

    /** Which master keys wrap at least one data key (platform scope), for readiness and key rotation. */
    masterKeysInUse(tx?: Tx): Promise<{ masterKeyId: string }[]> {
      return db.inTenant(PLATFORM_TENANT_ID, tx, (t) =>
        t.selectDistinct({ masterKeyId: tenantKeys.masterKeyId }).from(tenantKeys),
      );
    },
  };
}

export type TenantQueries = ReturnType<typeof tenantQueries>;
