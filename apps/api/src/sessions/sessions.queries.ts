import { and, desc, eq, isNull, lt, sql } from 'drizzle-orm';
import type { Database, Tx } from '../db/database.ts';
import { identities, sessions } from '../db/schema.ts';

export type SessionRow = typeof sessions.$inferSelect;
export type SessionRevokedReason = NonNullable<SessionRow['revokedReason']>;

export function sessionQueries(db: Database) {
  return {
    insert(tenantId: string, row: Omit<typeof sessions.$inferInsert, 'tenantId'>, tx?: Tx): Promise<SessionRow> {
      return db.inTenant(tenantId, tx, async (t) => {
        const [r] = await t
          .insert(sessions)
          .values({ ...row, tenantId })
          .returning();
        return r as SessionRow;
      });
    },

    /**
     * The tenant of a session, known only by its id (a refresh carries no token that names one): the policy
     * refresh_lookup lets exactly that one row through, for the length of this one transaction.
     */
    async tenantOf(id: string): Promise<string | undefined> {
      return db.orm.transaction(async (t) => {
        await t.execute(sql`select set_config('app.refresh_session_id', ${id}, true)`);
        const [r] = await t.select({ tenantId: sessions.tenantId }).from(sessions).where(eq(sessions.id, id));
        return r?.tenantId;
      });
    },

    /** Locks the row for the rest of the transaction: two refreshes of one session are decided one after the other. */
    forUpdate(tenantId: string, id: string, tx: Tx): Promise<SessionRow | undefined> {
      return db.inTenant(tenantId, tx, async (t) => {
        const [r] = await t
          .select()
          .from(sessions)
          .where(and(eq(sessions.tenantId, tenantId), eq(sessions.id, id)))
          .for('update');
        return r;
      });
    },

    update(
      tenantId: string,
      id: string,
      patch: Partial<Pick<SessionRow, 'refreshHash' | 'generation' | 'lastRefreshedAt' | 'lastSourceIp'>>,
      tx: Tx,
    ): Promise<void> {
      return db.inTenant(tenantId, tx, async (t) => {
        await t
          .update(sessions)
          .set(patch)
          .where(and(eq(sessions.tenantId, tenantId), eq(sessions.id, id)));
      });
    },

    revoke(tenantId: string, id: string, reason: SessionRevokedReason, tx: Tx): Promise<void> {
      return db.inTenant(tenantId, tx, async (t) => {
        await t
          .update(sessions)
          .set({ revokedAt: sql`now()`, revokedReason: reason })
          .where(and(eq(sessions.tenantId, tenantId), eq(sessions.id, id), isNull(sessions.revokedAt)));
      });
    },

    /** Newest first, with the identity's name; `identityId` narrows to one identity's sessions. */
    list(
      tenantId: string,
      identityId: string | undefined,
      limit: number,
      tx?: Tx,
    ): Promise<(SessionRow & { identityName: string })[]> {
      return db.inTenant(tenantId, tx, async (t) => {
        const rows = await t
          .select({ s: sessions, identityName: identities.name })
          .from(sessions)
          .innerJoin(identities, eq(identities.id, sessions.identityId))
          .where(and(eq(sessions.tenantId, tenantId), identityId ? eq(sessions.identityId, identityId) : undefined))
          .orderBy(desc(sessions.createdAt), desc(sessions.id))
          .limit(limit);
        return rows.map((r) => ({ ...r.s, identityName: r.identityName }));
      });
    },

    get(tenantId: string, id: string, tx?: Tx): Promise<SessionRow | undefined> {
      return db.inTenant(tenantId, tx, async (t) => {
        const [r] = await t
          .select()
          .from(sessions)
          .where(and(eq(sessions.tenantId, tenantId), eq(sessions.id, id)));
        return r;
      });
    },

    /** Whether a session's access tokens still count: not revoked and before its absolute end. */
    async isActive(tenantId: string, id: string): Promise<boolean> {
      return db.inTenant(tenantId, undefined, async (t) => {
        const [r] = await t
          .select({ id: sessions.id })
          .from(sessions)
          .where(
            and(
              eq(sessions.tenantId, tenantId),
              eq(sessions.id, id),
              isNull(sessions.revokedAt),
              sql`${sessions.expiresAt} > now()`,
            ),
          );
        return r !== undefined;
      });
    },

    /** Sessions of an identity that ended over a week ago: kept that long for the list, then dropped. */
    purgeEnded(tenantId: string, identityId: string, tx: Tx): Promise<void> {
      return db.inTenant(tenantId, tx, async (t) => {
        await t
          .delete(sessions)
          .where(
            and(
              eq(sessions.tenantId, tenantId),
              eq(sessions.identityId, identityId),
              lt(sql`coalesce(${sessions.revokedAt}, ${sessions.expiresAt})`, sql`now() - interval '7 days'`),
            ),
          );
      });
    },
  };
}

export type SessionQueries = ReturnType<typeof sessionQueries>;
