import { and, asc, eq, lt, sql } from 'drizzle-orm';
import type { IssuerMacFields, RowMacs } from '../crypto/row-macs.ts';
import type { Database, Tx } from '../db/database.ts';
import { federationReplays, identities, tenants, trustedIssuers } from '../db/schema.ts';

export type IssuerRow = typeof trustedIssuers.$inferSelect;
export type FederationBindingRow = (typeof identities.$inferSelect)['federation'][number];

/** The columns of a trusted issuer that its MAC covers: everything a federated login is verified against. */
export const issuerMacFields = (r: IssuerRow): IssuerMacFields => ({
  tenantId: r.tenantId,
  id: r.id,
  name: r.name,
  issuer: r.issuer,
  jwks: r.jwks,
  audiences: r.audiences,
  algorithms: r.algorithms,
  maxTokenAgeSeconds: r.maxTokenAgeSeconds,
  clockSkewSeconds: r.clockSkewSeconds,
});

/** Stores the MAC of an issuer row as written, in the writer's transaction. */
export async function sealIssuer(t: Tx, macs: RowMacs, row: IssuerRow): Promise<IssuerRow> {
  const mac = macs.issuer(issuerMacFields(row));
  await t.update(trustedIssuers).set({ mac }).where(eq(trustedIssuers.id, row.id));
  return { ...row, mac };
}

export function trustQueries(db: Database, macs: RowMacs) {
  return {
    list(tenantId: string, tx?: Tx): Promise<IssuerRow[]> {
      return db.inTenant(tenantId, tx, (t) =>
        t.select().from(trustedIssuers).where(eq(trustedIssuers.tenantId, tenantId)).orderBy(asc(trustedIssuers.name)),
      );
    },

    get(tenantId: string, id: string, tx?: Tx): Promise<IssuerRow | undefined> {
      return db.inTenant(tenantId, tx, async (t) => {
        const [r] = await t
          .select()
          .from(trustedIssuers)
          .where(and(eq(trustedIssuers.tenantId, tenantId), eq(trustedIssuers.id, id)));
        return r;
      });
    },

    byIssuer(tenantId: string, iss: string, tx?: Tx): Promise<IssuerRow | undefined> {
      return db.inTenant(tenantId, tx, async (t) => {
        const [r] = await t
          .select()
          .from(trustedIssuers)
          .where(and(eq(trustedIssuers.tenantId, tenantId), eq(trustedIssuers.issuer, iss)));
        return r;
      });
    },

    insert(
      tenantId: string,
      row: Omit<typeof trustedIssuers.$inferInsert, 'tenantId' | 'mac'>,
      tx?: Tx,
    ): Promise<IssuerRow> {
      return db.inTenant(tenantId, tx, async (t) => {
        const [r] = await t
          .insert(trustedIssuers)
          .values({ ...row, tenantId })
          .returning();
        return sealIssuer(t, macs, r as IssuerRow);
      });
    },

    update(
      tenantId: string,
      id: string,
      patch: Partial<Omit<typeof trustedIssuers.$inferInsert, 'tenantId' | 'id' | 'mac'>>,
      tx?: Tx,
    ): Promise<IssuerRow | undefined> {
      return db.inTenant(tenantId, tx, async (t) => {
        const [r] = await t
          .update(trustedIssuers)
          .set({ ...patch, updatedAt: sql`now()` })
          .where(and(eq(trustedIssuers.tenantId, tenantId), eq(trustedIssuers.id, id)))
          .returning();
        return r ? sealIssuer(t, macs, r) : undefined;
      });
    },

    remove(tenantId: string, id: string, tx?: Tx): Promise<boolean> {
      return db.inTenant(tenantId, tx, async (t) => {
        const rows = await t
          .delete(trustedIssuers)
          .where(and(eq(trustedIssuers.tenantId, tenantId), eq(trustedIssuers.id, id)))
          .returning({ id: trustedIssuers.id });
        return rows.length > 0;
      });
    },

    /** The tenant's slug: its default federation audience is `coffer:<slug>`. */
    async tenantSlug(tenantId: string, tx?: Tx): Promise<string | undefined> {
      return db.inTenant(tenantId, tx, async (t) => {
        const [r] = await t.select({ slug: tenants.slug }).from(tenants).where(eq(tenants.id, tenantId));
        return r?.slug;
      });
    },

    /** Identities whose bindings name an issuer (by name or id), so an issuer still in use is not deleted silently. */
    async bindingsOf(tenantId: string, issuer: IssuerRow, tx?: Tx): Promise<number> {
      return db.inTenant(tenantId, tx, async (t) => {
        const [r] = await t
          .select({ n: sql<number>`count(*)::int` })
          .from(identities)
          .where(
            and(
              eq(identities.tenantId, tenantId),
              sql`exists (select 1 from jsonb_array_elements(${identities.federation}) b
                          where b->>'issuer' in (${issuer.name}, ${issuer.id}))`,
            ),
          );
        return r?.n ?? 0;
      });
    },

    /**
     * Records a subject token as used until it expires; false when it was already used (a replay). Expired entries
     * of the same issuer go in the same transaction, so the table holds only tokens that could still be replayed.
     */
    async claimToken(tenantId: string, issuerId: string, tokenHash: Buffer, expiresAt: Date, tx?: Tx) {
      return db.inTenant(tenantId, tx, async (t) => {
        await t
          .delete(federationReplays)
          .where(
            and(
              eq(federationReplays.tenantId, tenantId),
              eq(federationReplays.issuerId, issuerId),
              lt(federationReplays.expiresAt, sql`now()`),
            ),
          );
        const rows = await t
          .insert(federationReplays)
          .values({ tenantId, issuerId, tokenHash, expiresAt })
          .onConflictDoNothing()
          .returning({ tenantId: federationReplays.tenantId });
        return rows.length > 0;
      });
    },
  };
}

export type TrustQueries = ReturnType<typeof trustQueries>;
