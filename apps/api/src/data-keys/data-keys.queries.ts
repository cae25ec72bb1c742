import { PLATFORM_TENANT_ID } from '@coffer/contracts';
import { and, asc, eq, sql } from 'drizzle-orm';
import type { Database, Tx } from '../db/database.ts';
import { tenantKeys } from '../db/schema.ts';
import { PGP_OPTIONS } from '../secrets/secrets.queries.ts';

export type TenantKeyRow = typeof tenantKeys.$inferSelect;

export function dataKeyQueries(db: Database) {
  return {
    list(tenantId: string, tx?: Tx): Promise<TenantKeyRow[]> {
      return db.inTenant(tenantId, tx, (t) =>
        t.select().from(tenantKeys).where(eq(tenantKeys.tenantId, tenantId)).orderBy(asc(tenantKeys.version)),
      );
    },

    /**
     * All key rows, locked: a rotation and a retirement of the same tenant never interleave. The tenant row is
     * locked first, so a rotation that waited reads the rows afresh, the key the other one added included (locking
     * only the key rows would hand it the set it saw before waiting, and the same next version). NO KEY UPDATE:
     * writes' foreign-key checks on the tenant row (KEY SHARE) do not wait for it.
     */
    lockAll(tenantId: string, tx: Tx): Promise<TenantKeyRow[]> {
      return db.inTenant(tenantId, tx, async (t) => {
        await t.execute(sql`select 1 from coffer.tenants where id = ${tenantId} for no key update`);
        return t
          .select()
          .from(tenantKeys)
          .where(eq(tenantKeys.tenantId, tenantId))
          .orderBy(asc(tenantKeys.version))
          .for('update');
      });
    },

    insert(tenantId: string, row: Omit<typeof tenantKeys.$inferInsert, 'tenantId'>, tx: Tx): Promise<void> {
      return db.inTenant(tenantId, tx, async (t) => {
        await t.insert(tenantKeys).values({ ...row, tenantId });
      });
    },

    setState(tenantId: string, version: number, state: 'active' | 'retiring' | 'retired', tx: Tx): Promise<void> {
      return db.inTenant(tenantId, tx, async (t) => {
        await t
          .update(tenantKeys)
          .set({
            state,
            // A retired key is erased: no ciphertext needs it, and nothing can use it again.
            ...(state === 'retired' ? { wrappedKey: Buffer.alloc(0), retiredAt: sql`now()` } : {}),
          })
          .where(and(eq(tenantKeys.tenantId, tenantId), eq(tenantKeys.version, version)));
      });
    },

    /** Secret versions per data-key version (destroyed ones included: they still name a key until re-keyed). */
    async ciphertextCounts(tenantId: string, tx?: Tx): Promise<Map<number, number>> {
      return db.inTenant(tenantId, tx, async (t) => {
        const { rows } = await t.execute<{ v: number; n: string }>(
          sql`select dek_version as v, count(*) as n from coffer.secret_versions where tenant_id = ${tenantId} group by 1`,
        );
        return new Map(rows.map((r) => [r.v, Number(r.n)]));
      });
    },

    /** Tenants with a key being retired (platform scope): the re-encryption job's work list. */
    async tenantsRekeying(): Promise<string[]> {
      return db.withTenant(PLATFORM_TENANT_ID, async (t) => {
        const { rows } = await t.execute<{ tenant_id: string }>(
          sql`select distinct tenant_id from coffer.tenant_keys where state = 'retiring'`,
        );
        return rows.map((r) => r.tenant_id);
      });
    },

    /**
     * Re-encrypts up to `limit` versions sealed by non-active keys under the active one, in one short
     * transaction, inside PostgreSQL (keys as bind parameters). Rows another worker holds are skipped, so
     * replicas share the work; readers are never blocked (MVCC). Returns how many rows moved.
     */
    async reencryptBatch(
      tenantId: string,
      keys: (string | null)[],
      activeVersion: number,
      activeKey: string,
      limit: number,
    ): Promise<number> {
      return db.withTenant(tenantId, async (t) => {
        const { rows } = await t.execute<{ n: string }>(sql`
          with batch as (
            select secret_id, version from coffer.secret_versions
            where tenant_id = ${tenantId} and dek_version <> ${activeVersion}
            limit ${limit}
            for update skip locked),
          moved as (
            update coffer.secret_versions v
              set ciphertext = case when v.ciphertext is null then null
                  else pgp_sym_encrypt(pgp_sym_decrypt(v.ciphertext, (${sql.param(keys)}::text[])[v.dek_version]), ${activeKey}, ${PGP_OPTIONS}) end,
                dek_version = ${activeVersion}
            from batch
            where v.secret_id = batch.secret_id and v.version = batch.version
            returning 1)
          select count(*) as n from moved`);
        return Number(rows[0]?.n ?? 0);
      });
    },
  };
}

export type DataKeyQueries = ReturnType<typeof dataKeyQueries>;
