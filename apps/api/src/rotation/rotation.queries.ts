import { and, asc, eq, isNotNull, isNull, lte, sql } from 'drizzle-orm';
import type { Database, Tx } from '../db/database.ts';
import { rotationSchedule, secrets } from '../db/schema.ts';
import type { SecretRow } from '../secrets/secrets.queries.ts';

export function rotationQueries(db: Database) {
  return {
    /** Live secrets with a rotation policy due before `before`, soonest first. */
    due(tenantId: string, environment: string, before: Date, limit: number, tx?: Tx): Promise<SecretRow[]> {
      return db.inTenant(tenantId, tx, (t) =>
        t
          .select()
          .from(secrets)
          .where(
            and(
              eq(secrets.environment, environment),
              isNull(secrets.deletedAt),
              isNotNull(secrets.nextRotationAt),
              lte(secrets.nextRotationAt, before),
            ),
          )
          .orderBy(asc(secrets.nextRotationAt))
          .limit(limit),
      );
    },

    /**
     * In a platform-scope transaction: the next due automatic rotation no other replica holds, locked until the
     * transaction ends (SKIP LOCKED: each due secret goes to exactly one scheduler).
     */
    async claimDue(tx: Tx): Promise<{ secretId: string; tenantId: string } | undefined> {
      const [row] = await tx
        .select({ secretId: rotationSchedule.secretId, tenantId: rotationSchedule.tenantId })
        .from(rotationSchedule)
        .where(and(eq(rotationSchedule.automatic, true), lte(rotationSchedule.dueAt, sql`now()`)))
        .orderBy(asc(rotationSchedule.dueAt))
        .limit(1)
        .for('update', { skipLocked: true });
      return row;
    },

    lockSecretById(tenantId: string, id: string, tx: Tx): Promise<SecretRow | undefined> {
      return db.inTenant(tenantId, tx, async (t) => {
        const [row] = await t.select().from(secrets).where(eq(secrets.id, id)).for('update');
        return row;
      });
    },

    /** Pushes a failed automatic rotation back, so a bad generator is retried later instead of in a hot loop. */
    postpone(tenantId: string, secretId: string, until: Date, tx: Tx): Promise<void> {
      return db.inTenant(tenantId, tx, async (t) => {
        await t.update(rotationSchedule).set({ dueAt: until }).where(eq(rotationSchedule.secretId, secretId));
      });
    },
  };
}

export type RotationQueries = ReturnType<typeof rotationQueries>;
