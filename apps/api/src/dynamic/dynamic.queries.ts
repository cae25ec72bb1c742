import { PLATFORM_TENANT_ID } from '@coffer/contracts';
import { and, asc, eq, gt, inArray, sql } from 'drizzle-orm';
import type { Database, Tx } from '../db/database.ts';
import { dynamicBackends, leases } from '../db/schema.ts';

export type BackendRow = typeof dynamicBackends.$inferSelect;
export type LeaseRow = typeof leases.$inferSelect;
export type LeaseState = LeaseRow['state'];
export type RevokeReason = NonNullable<LeaseRow['revokeReason']>;

/** A lease this worker holds the claim on: revoking it is its job until `claim_token` changes or the claim lapses. */
export interface ClaimedLease {
  id: string;
  tenantId: string;
  claimToken: string;
  /** Revocation attempts so far, this one included. */
  attempts: number;
  /** The state before the claim: `revoke_failed` stays so while it is retried. */
  was: LeaseState;
}

/** States in which a lease may still hold a role in the target database. */
export const UNREVOKED: readonly LeaseState[] = ['creating', 'active', 'revoking', 'revoke_failed'];

type ClaimRow = {
  id: string;
  tenant_id: string;
  claim_token: string;
  revoke_attempts: number;
  was: LeaseState;
};

const toClaimed = (r: ClaimRow): ClaimedLease => ({
  id: r.id,
  tenantId: r.tenant_id,
  claimToken: r.claim_token,
  attempts: r.revoke_attempts,
  was: r.was,
});

/**
 * The claim itself, for the rows `due` selects (locked, SKIP LOCKED): a fresh token, the claim's deadline in
 * `next_attempt_at`, one more attempt, and the reason if none was given yet (a lease found expired; a creation
 * that never finished).
 */
const claimSql = (due: ReturnType<typeof sql>, claimMs: number) => sql`
  with due as (${due})
  update coffer.leases l set
    state = case when due.was = 'revoke_failed' then 'revoke_failed' else 'revoking' end,
    revoke_reason = coalesce(l.revoke_reason, case when due.was = 'creating' then 'creation_failed' else 'expired' end),
    revoke_requested_at = coalesce(l.revoke_requested_at, now()),
    claim_token = gen_random_uuid(),
    next_attempt_at = now() + make_interval(secs => ${claimMs / 1000}),
    revoke_attempts = l.revoke_attempts + 1
  from due where l.id = due.id
  returning l.id, l.tenant_id, l.claim_token, l.revoke_attempts, due.was`;

export function dynamicQueries(db: Database) {
  return {
    insertBackend(tenantId: string, row: Omit<typeof dynamicBackends.$inferInsert, 'tenantId'>, tx?: Tx) {
      return db.inTenant(tenantId, tx, async (t) => {
        const [r] = await t
          .insert(dynamicBackends)
          .values({ ...row, tenantId })
          .returning();
        return r as BackendRow;
      });
    },

    /** Backends by name, each with how many of its leases are not revoked yet. */
    backends(tenantId: string, name?: string, tx?: Tx): Promise<(BackendRow & { activeLeases: number })[]> {
      return db.inTenant(tenantId, tx, (t) =>
        t
          .select({
            backend: dynamicBackends,
            activeLeases: sql<number>`(select count(*)::int from coffer.leases l
              where l.tenant_id = ${dynamicBackends.tenantId} and l.backend_id = ${dynamicBackends.id}
                and l.state <> 'revoked')`,
          })
          .from(dynamicBackends)
          .where(name === undefined ? undefined : eq(dynamicBackends.name, name))
          .orderBy(asc(dynamicBackends.name))
          .then((rows) => rows.map((r) => ({ ...r.backend, activeLeases: r.activeLeases }))),
      );
    },

    backendById(tenantId: string, id: string, tx?: Tx): Promise<BackendRow | undefined> {
      return db.inTenant(tenantId, tx, async (t) => {
        const [r] = await t.select().from(dynamicBackends).where(eq(dynamicBackends.id, id));
        return r;
      });
    },

    lockBackend(tenantId: string, name: string, tx: Tx): Promise<BackendRow | undefined> {
      return db.inTenant(tenantId, tx, async (t) => {
        const [r] = await t.select().from(dynamicBackends).where(eq(dynamicBackends.name, name)).for('update');
        return r;
      });
    },

    deleteBackend(tenantId: string, id: string, tx: Tx): Promise<void> {
      return db.inTenant(tenantId, tx, async (t) => {
        await t.delete(dynamicBackends).where(eq(dynamicBackends.id, id));
      });
    },

    unrevokedOf(tenantId: string, backendId: string, tx: Tx): Promise<number> {
      return db.inTenant(tenantId, tx, async (t) => {
        const { rows } = await t.execute<{ n: number }>(
          sql`select count(*)::int as n from coffer.leases where backend_id = ${backendId} and state <> 'revoked'`,
        );
        return rows[0]?.n ?? 0;
      });
    },

    insertLease(tenantId: string, row: Omit<typeof leases.$inferInsert, 'tenantId'>, tx?: Tx): Promise<LeaseRow> {
      return db.inTenant(tenantId, tx, async (t) => {
        const [r] = await t
          .insert(leases)
          .values({ ...row, tenantId })
          .returning();
        return r as LeaseRow;
      });
    },

    lease(tenantId: string, id: string, tx?: Tx): Promise<LeaseRow | undefined> {
      return db.inTenant(tenantId, tx, async (t) => {
        const [r] = await t.select().from(leases).where(eq(leases.id, id));
        return r;
      });
    },

    leaseForUpdate(tenantId: string, id: string, tx: Tx): Promise<LeaseRow | undefined> {
      return db.inTenant(tenantId, tx, async (t) => {
        const [r] = await t.select().from(leases).where(eq(leases.id, id)).for('update');
        return r;
      });
    },

    /**
     * A created role's lease goes live, if the creation still holds its claim (the job may have taken it over) and
     * its identity was not disabled or deleted meanwhile (whose leases are then revoked, this one with them).
     */
    activate(tenantId: string, id: string, claim: string, tx: Tx): Promise<LeaseRow | undefined> {
      return db.inTenant(tenantId, tx, async (t) => {
        const [r] = await t
          .update(leases)
          .set({ state: 'active', claimToken: null, nextAttemptAt: null })
          .where(
            and(
              eq(leases.id, id),
              eq(leases.claimToken, claim),
              eq(leases.state, 'creating'),
              sql`exists (select 1 from coffer.identities i where i.id = ${leases.identityId} and not i.disabled)`,
              // Waits for a revocation of the deployment that is under way, then sees it: a lease never outlives
              // the revocation of the deployment it was made for.
              sql`(${leases.deploymentId} is null or exists (select 1 from coffer.deployments d
                where d.id = ${leases.deploymentId} and d.revoked_at is null for share))`,
            ),
          )
          .returning();
        return r;
      });
    },

    /**
     * A creation that failed: whatever the statements did or did not do, the lease is revoked now, by the job
     * (DROP ROLE IF EXISTS makes that right whether the role was made or not).
     */
    abandonCreation(tenantId: string, id: string, claim: string): Promise<void> {
      return db.withTenant(tenantId, async (t) => {
        await t
          .update(leases)
          .set({
            state: 'revoking',
            revokeReason: 'creation_failed',
            revokeRequestedAt: sql`now()`,
            claimToken: null,
            nextAttemptAt: sql`now()`,
          })
          .where(and(eq(leases.id, id), eq(leases.claimToken, claim), eq(leases.state, 'creating')));
      });
    },

    /** A creation known to have made nothing in the target: the lease ends here, with nothing to revoke. */
    failCreation(tenantId: string, id: string, claim: string): Promise<void> {
      return db.withTenant(tenantId, async (t) => {
        await t
          .update(leases)
          .set({
            state: 'revoked',
            revokeReason: 'creation_failed',
            revokeRequestedAt: sql`now()`,
            revokedAt: sql`now()`,
            claimToken: null,
            nextAttemptAt: null,
          })
          .where(and(eq(leases.id, id), eq(leases.claimToken, claim), eq(leases.state, 'creating')));
      });
    },

    renew(tenantId: string, id: string, expiresAt: Date, tx: Tx): Promise<LeaseRow> {
      return db.inTenant(tenantId, tx, async (t) => {
        const [r] = await t
          .update(leases)
          .set({ expiresAt, renewedAt: sql`now()` })
          .where(eq(leases.id, id))
          .returning();
        return r as LeaseRow;
      });
    },

    page(
      tenantId: string,
      f: {
        identityId?: string | undefined;
        backend?: string | undefined;
        deploymentId?: string | undefined;
        state?: LeaseState | undefined;
      },
      after: string | undefined,
      limit: number,
    ): Promise<LeaseRow[]> {
      return db.withTenant(tenantId, (t) =>
        t
          .select()
          .from(leases)
          .where(
            and(
              f.identityId ? eq(leases.identityId, f.identityId) : undefined,
              f.backend ? eq(leases.backendName, f.backend) : undefined,
              f.deploymentId ? eq(leases.deploymentId, f.deploymentId) : undefined,
              f.state ? eq(leases.state, f.state) : undefined,
              after ? gt(leases.id, after) : undefined,
            ),
          )
          .orderBy(asc(leases.id))
          .limit(limit),
      );
    },

    /**
     * Asks for the revocation of every lease that matches, in the caller's transaction (an identity being
     * disabled): live ones become `revoking` and are due at once, ones waiting out a backoff are due at once too.
     * Leases a worker holds right now are left to it. Returns the ids asked to end.
     */
    markForRevocation(
      tenantId: string,
      f: { identityId?: string; backendId?: string; deploymentId?: string; leaseId?: string },
      reason: RevokeReason,
      tx: Tx,
    ): Promise<string[]> {
      return db.inTenant(tenantId, tx, async (t) => {
        const rows = await t
          .update(leases)
          .set({
            state: sql`case when ${leases.state} = 'revoke_failed' then 'revoke_failed' else 'revoking' end`,
            revokeReason: sql`coalesce(${leases.revokeReason}, ${reason})`,
            revokeRequestedAt: sql`coalesce(${leases.revokeRequestedAt}, now())`,
            nextAttemptAt: sql`now()`,
          })
          .where(
            and(
              f.identityId ? eq(leases.identityId, f.identityId) : undefined,
              f.backendId ? eq(leases.backendId, f.backendId) : undefined,
              f.deploymentId ? eq(leases.deploymentId, f.deploymentId) : undefined,
              f.leaseId ? eq(leases.id, f.leaseId) : undefined,
              sql`(${leases.state} = 'active' or (${leases.state} in ('revoking', 'revoke_failed')
                and (${leases.claimToken} is null or ${leases.nextAttemptAt} <= now())))`,
            ),
          )
          .returning({ id: leases.id });
        return rows.map((r) => r.id);
      });
    },

    /**
     * Claims, across tenants (platform scope), leases whose revocation is due: live leases past their expiry,
     * and leases whose next attempt (or whose creation's, or a lapsed claim's deadline) has come.
     */
    async claimDue(limit: number, claimMs: number): Promise<ClaimedLease[]> {
      return db.withTenant(PLATFORM_TENANT_ID, async (t) => {
        const expired = await t.execute<ClaimRow>(
          claimSql(
            sql`select id, state as was from coffer.leases where state = 'active' and expires_at <= now()
              order by expires_at limit ${limit} for update skip locked`,
            claimMs,
          ),
        );
        const retries = await t.execute<ClaimRow>(
          claimSql(
            sql`select id, state as was from coffer.leases
              where state in ('creating', 'revoking', 'revoke_failed') and next_attempt_at <= now()
              order by next_attempt_at limit ${limit} for update skip locked`,
            claimMs,
          ),
        );
        return [...expired.rows, ...retries.rows].map(toClaimed);
      });
    },

    /** Claims given leases of one tenant now (a revocation asked for by a request), if no worker holds them. */
    async claimIds(tenantId: string, ids: readonly string[], claimMs: number): Promise<ClaimedLease[]> {
      if (ids.length === 0) return [];
      return db.withTenant(tenantId, async (t) => {
        const { rows } = await t.execute<ClaimRow>(
          claimSql(
            sql`select id, state as was from coffer.leases
              where id = any(${sql.param(ids)}::uuid[])
                and (state = 'active' or (state in ('revoking', 'revoke_failed')
                  and (claim_token is null or next_attempt_at <= now())))
              for update skip locked`,
            claimMs,
          ),
        );
        return rows.map(toClaimed);
      });
    },

    /** The lease is revoked, if this worker still holds its claim; the caller writes the audit event in `tx`. */
    settleRevoked(tenantId: string, c: ClaimedLease, tx: Tx): Promise<LeaseRow | undefined> {
      return db.inTenant(tenantId, tx, async (t) => {
        const [r] = await t
          .update(leases)
          .set({ state: 'revoked', revokedAt: sql`now()`, claimToken: null, nextAttemptAt: null, lastError: null })
          .where(and(eq(leases.id, c.id), eq(leases.claimToken, c.claimToken)))
          .returning();
        return r;
      });
    },

    settleFailed(
      tenantId: string,
      c: ClaimedLease,
      o: { state: 'revoking' | 'revoke_failed'; nextAttemptAt: Date; error: string },
      tx: Tx,
    ): Promise<LeaseRow | undefined> {
      return db.inTenant(tenantId, tx, async (t) => {
        const [r] = await t
          .update(leases)
          .set({ state: o.state, nextAttemptAt: o.nextAttemptAt, lastError: o.error, claimToken: null })
          .where(and(eq(leases.id, c.id), eq(leases.claimToken, c.claimToken)))
          .returning();
        return r;
      });
    },

    leasesByIds(tenantId: string, ids: readonly string[]): Promise<LeaseRow[]> {
      if (ids.length === 0) return Promise.resolve([]);
      return db.withTenant(tenantId, (t) =>
        t
          .select()
          .from(leases)
          .where(inArray(leases.id, [...ids])),
      );
    },
  };
}

export type DynamicQueries = ReturnType<typeof dynamicQueries>;
