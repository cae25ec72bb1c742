import { PLATFORM_TENANT_ID, type WebhookEvent } from '@coffer/contracts';
import { and, desc, eq, sql } from 'drizzle-orm';
import type { Database, Tx } from '../db/database.ts';
import { webhookDeliveries, webhooks } from '../db/schema.ts';

export type WebhookRow = typeof webhooks.$inferSelect;
export type DeliveryRow = typeof webhookDeliveries.$inferSelect;

export interface ClaimedDelivery {
  id: string;
  tenantId: string;
  webhookId: string;
  event: string;
  payload: Record<string, unknown>;
  attempts: number;
  url: string;
  secretWrapped: Buffer;
  secretMasterKeyId: string;
}

export function webhookQueries(db: Database) {
  /** Several events in one statement (a bundle write names each secret it changed). */
  async function enqueueManyInTx(
    tenantId: string,
    events: readonly { event: WebhookEvent; payload: Record<string, unknown> }[],
    tx: Tx,
  ): Promise<void> {
    if (events.length === 0) return;
    await db.inTenant(tenantId, tx, (t) =>
      t.execute(sql`
        insert into coffer.webhook_deliveries (id, tenant_id, webhook_id, event, payload, status, next_attempt_at)
        select gen_random_uuid(), w.tenant_id, w.id, e.event, e.payload, 'pending', now()
        from jsonb_to_recordset(${JSON.stringify(events)}::jsonb) as e(event text, payload jsonb)
        join coffer.webhooks w on w.events ? e.event
        where w.tenant_id = ${tenantId} and not w.disabled`),
    );
  }

  return {
    enqueueManyInTx,

    insert(tenantId: string, row: Omit<typeof webhooks.$inferInsert, 'tenantId'>, tx?: Tx): Promise<WebhookRow> {
      return db.inTenant(tenantId, tx, async (t) => {
        const [r] = await t
          .insert(webhooks)
          .values({ ...row, tenantId })
          .returning();
        return r as WebhookRow;
      });
    },

    list(tenantId: string, tx?: Tx): Promise<WebhookRow[]> {
      return db.inTenant(tenantId, tx, (t) =>
        t.select().from(webhooks).where(eq(webhooks.tenantId, tenantId)).orderBy(webhooks.createdAt),
      );
    },

    remove(tenantId: string, id: string, tx?: Tx): Promise<boolean> {
      return db.inTenant(
        tenantId,
        tx,
        async (t) => (await t.delete(webhooks).where(eq(webhooks.id, id)).returning({ id: webhooks.id })).length > 0,
      );
    },

    deliveries(tenantId: string, webhookId: string, limit: number, tx?: Tx): Promise<DeliveryRow[]> {
      return db.inTenant(tenantId, tx, (t) =>
        t
          .select()
          .from(webhookDeliveries)
          .where(and(eq(webhookDeliveries.tenantId, tenantId), eq(webhookDeliveries.webhookId, webhookId)))
          .orderBy(desc(webhookDeliveries.createdAt))
          .limit(limit),
      );
    },

    /** In the caller's transaction: one pending delivery per webhook of the tenant that listens for the event. */
    enqueueInTx(tenantId: string, event: WebhookEvent, payload: Record<string, unknown>, tx: Tx): Promise<void> {
      return enqueueManyInTx(tenantId, [{ event, payload }], tx);
    },

    /**
     * Claims due deliveries across tenants (platform scope) by leasing them: each gets an attempt and a lease
     * deadline in one short transaction, so no lock is held while the HTTP call runs; a crashed worker's lease
     * simply expires and the delivery is tried again (at least once).
     */
    claimDue(limit: number, leaseMs: number): Promise<ClaimedDelivery[]> {
      return db.withTenant(PLATFORM_TENANT_ID, async (t) => {
        const { rows } = await t.execute<{
          id: string;
          tenant_id: string;
          webhook_id: string;
          event: string;
          payload: Record<string, unknown>;
          attempts: number;
          url: string;
          secret_wrapped: Buffer;
          secret_master_key_id: string;
        }>(sql`
          with due as (
            select d.id from coffer.webhook_deliveries d
            where d.status = 'pending' and d.next_attempt_at <= now()
            order by d.next_attempt_at
            limit ${limit}
            for update skip locked)
          update coffer.webhook_deliveries d
            set attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => ${leaseMs / 1000})
          from due, coffer.webhooks w
          where d.id = due.id and w.id = d.webhook_id
          returning d.id, d.tenant_id, d.webhook_id, d.event, d.payload, d.attempts, w.url, w.secret_wrapped, w.secret_master_key_id`);
        return rows.map((r) => ({
          id: r.id,
          tenantId: r.tenant_id,
          webhookId: r.webhook_id,
          event: r.event,
          payload: r.payload,
          attempts: r.attempts,
          url: r.url,
          secretWrapped: r.secret_wrapped,
          secretMasterKeyId: r.secret_master_key_id,
        }));
      });
    },

    settle(
      tenantId: string,
      id: string,
      outcome: {
        status: 'pending' | 'delivered' | 'failed';
        nextAttemptAt?: Date;
        statusCode: number | null;
        error: string | null;
      },
    ): Promise<void> {
      return db.withTenant(tenantId, async (t) => {
        await t
          .update(webhookDeliveries)
          .set({
            status: outcome.status,
            lastStatusCode: outcome.statusCode,
            lastError: outcome.error,
            ...(outcome.nextAttemptAt ? { nextAttemptAt: outcome.nextAttemptAt } : {}),
            ...(outcome.status === 'delivered' ? { deliveredAt: sql`now()` } : {}),
          })
          .where(eq(webhookDeliveries.id, id));
      });
    },
  };
}

export type WebhookQueries = ReturnType<typeof webhookQueries>;
