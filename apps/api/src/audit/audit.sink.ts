import type { Tx } from '../db/database.ts';
import type { AuditEvent } from './audit.types.ts';

/** How services write audit events: durably on their own (batched), or inside the transaction of a change. */
export interface AuditSink {
  record(event: AuditEvent): Promise<void>;
  appendInTx(tx: Tx, events: readonly AuditEvent[]): Promise<void>;
}
