import { sql } from 'drizzle-orm';
import type pg from 'pg';
import type { Tx } from '../db/database.ts';
import { scrubQueryError } from '../db/pg-errors.ts';
import { unavailable } from '../errors/app-error.ts';
import { type LinkKeys, toAppendRow } from './audit.digest.ts';
import type { AuditEvent } from './audit.types.ts';

/** Groups events by tenant, preserving order within each tenant. */
function byTenant(events: readonly AuditEvent[]): Map<string, AuditEvent[]> {
  const groups = new Map<string, AuditEvent[]>();
  for (const e of events) {
    const g = groups.get(e.tenantId);
    if (g) g.push(e);
    else groups.set(e.tenantId, [e]);
  }
  return groups;
}

/**
 * Writes events inside the caller's transaction, so a change and its audit events commit together or not at
 * all. They are staged, and chained by a deferred trigger when the transaction commits (migration 0011): the
 * tenant's chain head is locked for the commit alone, not for the rest of the transaction. If chaining fails
 * there, the COMMIT fails with CF002 (see Database.withTenant: 503, nothing changed). Leaves the transaction
 * scoped to the last tenant staged; callers that continue must rescope.
 */
export async function appendInTx(tx: Tx, events: readonly AuditEvent[], linkKey: LinkKeys): Promise<void> {
  for (const [tenantId, group] of byTenant(events)) {
    const k = linkKey(tenantId);
    try {
      await tx.execute(
        sql`select coffer.audit_stage(${tenantId}::uuid, ${JSON.stringify(group.map(toAppendRow))}::jsonb, ${k.id}, ${k.key})`,
      );
    } catch (err) {
      // No audit event, no change: the caller's transaction rolls back and the request is refused as unavailable.
      throw Object.assign(unavailable('the audit log is unavailable, so the change was not made'), {
        cause: scrubQueryError(err),
      });
    }
  }
}

const refused = () => unavailable('the audit log is unavailable, so the request was refused');

interface Pending {
  event: AuditEvent;
  resolve: () => void;
  reject: (err: Error) => void;
}

export interface AuditBatcherOptions {
  pool: pg.Pool;
  /** Each tenant's link key, handed to coffer.audit_append with its events. */
  linkKey: LinkKeys;
  /** Events per commit at most. */
  maxBatch?: number;
  /**
   * Commits in flight at once. One by default: events that arrive during a commit wait for it and go together in
   * the next, so batches grow with the load. Two in flight halved the batches, and since a batch locks its tenants'
   * chain heads the second mostly waited for the first: a read cost 30-40 % more PostgreSQL CPU (bench, 10
   * connections: 2178-2242 req/s with two, 2624-3238 with one).
   */
  maxInFlight?: number;
  onError?: (err: unknown) => void;
  /** Called after each commit with its size and duration (metrics). */
  observe?: (events: number, seconds: number) => void;
}

/**
 * Group commit for events that have no transaction of their own (reads, denials, logins). `record` resolves
 * only once the event's transaction has committed, so a read's event is durable before its response is sent;
 * concurrent requests share one commit (one fsync) instead of paying one each.
 */
export class AuditBatcher {
  private queue: Pending[] = [];
  private inFlight = 0;
  private idleWaiters: (() => void)[] = [];
  private readonly maxBatch: number;
  private readonly maxInFlight: number;

  constructor(private readonly o: AuditBatcherOptions) {
    this.maxBatch = o.maxBatch ?? 256;
    this.maxInFlight = o.maxInFlight ?? 1;
  }

  record(event: AuditEvent): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ event, resolve, reject });
      this.pump();
    });
  }

  /** Resolves when every recorded event has been committed or failed. */
  drain(): Promise<void> {
    if (this.queue.length === 0 && this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private pump(): void {
    while (this.inFlight < this.maxInFlight && this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch);
      this.inFlight++;
      void this.commit(batch).finally(() => {
        this.inFlight--;
        if (this.queue.length > 0) this.pump();
        else if (this.inFlight === 0) for (const w of this.idleWaiters.splice(0)) w();
      });
    }
  }

  private async commit(batch: Pending[]): Promise<void> {
    const started = process.hrtime.bigint();
    try {
      // One statement in autocommit: one transaction, one WAL flush, one round trip for the whole batch. Tenants
      // go in a fixed order so two commits that share tenants lock their chain heads in the same order.
      const groups = [...byTenant(batch.map((p) => p.event))].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      const keys = groups.map(([tenantId]) => this.o.linkKey(tenantId));
      const { rows } = await this.o.pool.query<{ failed: string[] }>({
        name: 'coffer_audit_batch',
        text: 'select coffer.audit_append_batch($1::uuid[], $2::jsonb[], $3::text[], $4::bytea[]) as failed',
        values: [
          groups.map(([tenantId]) => tenantId),
          groups.map(([, events]) => JSON.stringify(events.map(toAppendRow))),
          keys.map((k) => k.id),
          keys.map((k) => k.key),
        ],
      });
      this.o.observe?.(batch.length, Number(process.hrtime.bigint() - started) / 1e9);
      // Only the tenants whose events could not be chained fail; the others' events committed.
      const failed = new Set(rows[0]?.failed ?? []);
      if (failed.size > 0) this.o.onError?.(new Error(`audit events of ${failed.size} tenant(s) could not be chained`));
      if (failed.size === 0) {
        for (const p of batch) p.resolve();
        return;
      }
      // Made only on failure: an Error captures a stack, which cost more than the rest of a commit's bookkeeping.
      const failure = refused();
      for (const p of batch) {
        if (failed.has(p.event.tenantId)) p.reject(failure);
        else p.resolve();
      }
    } catch (err) {
      this.o.onError?.(err);
      const failure = refused();
      for (const p of batch) p.reject(failure);
    }
  }
}
