import { DEFAULT_ENVIRONMENT, PLATFORM_TENANT_ID } from '@coffer/contracts';
import { and, asc, eq, gt, ne, sql } from 'drizzle-orm';
import { type LinkKey, toAppendRow } from '../audit/audit.digest.ts';
import type { AuditEvent } from '../audit/audit.types.ts';
import type { Database, Tx } from '../db/database.ts';
import { environments, tenantKeys, tenants } from '../db/schema.ts';

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

    findById(id: string, tx?: Tx): Promise<TenantRow | undefined> {
      return db.inTenant(PLATFORM_TENANT_ID, tx, async (t) => {
        const [row] = await t
          .select()
          .from(tenants)
          .where(and(eq(tenants.id, id), ne(tenants.id, PLATFORM_TENANT_ID)));
        return row;
      });
    },

    update(
      id: string,
      patch: Partial<Pick<TenantRow, 'name' | 'rateLimitPerSecond'>>,
      tx?: Tx,
    ): Promise<TenantRow | undefined> {
      return db.inTenant(PLATFORM_TENANT_ID, tx, async (t) => {
        const [row] = await t
          .update(tenants)
          .set({ ...patch, updatedAt: sql`now()` })
          .where(and(eq(tenants.id, id), ne(tenants.id, PLATFORM_TENANT_ID)))
          .returning();
        return row;
      });
    },

    /**
     * Sets the tenant's audit retention through coffer.audit_set_retention, which appends `events` (the record of
     * the change) to the platform's chain in the same transaction. Returns the retention it replaced.
     */
    async setAuditRetention(
      tenantId: string,
      days: number,
      events: readonly AuditEvent[],
      linkKey: LinkKey,
      tx?: Tx,
    ): Promise<number> {
      return db.inTenant(tenantId, tx, async (t) => {
        const { rows } = await t.execute<{ previous: number }>(
          sql`select coffer.audit_set_retention(${tenantId}::uuid, ${days}::integer, ${JSON.stringify(events.map(toAppendRow))}::jsonb, ${linkKey.id}, ${linkKey.key}) as previous`,
        );
        return Number(rows[0]?.previous);
      });
    },

    /** Serialises changes that must see a consistent tenant (e.g. "keep at least one admin"). */
    async lock(tenantId: string, tx: Tx): Promise<void> {
      await db.inTenant(tenantId, tx, (t) =>
        t.select({ id: tenants.id }).from(tenants).where(eq(tenants.id, tenantId)).for('update'),
      );
    },

    /** The environment every tenant starts with, where requests without `?env` go. */
    async insertDefaultEnvironment(tenantId: string, tx: Tx): Promise<void> {
      await db.inTenant(tenantId, tx, async (t) => {
        await t.insert(environments).values({ tenantId, slug: DEFAULT_ENVIRONMENT, name: 'Default' });
      });
    },

    insertKey(tenantId: string, key: Omit<typeof tenantKeys.$inferInsert, 'tenantId'>, tx?: Tx): Promise<void> {
      return db.inTenant(tenantId, tx, async (t) => {
        await t.insert(tenantKeys).values({ ...key, tenantId });
      });
    },
  };
}

export type TenantQueries = ReturnType<typeof tenantQueries>;
