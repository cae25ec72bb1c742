import type { Tx } from '../db/database.ts';
import type { AuditEvent } from './audit.types.ts';

/** How services write audit events: durably on their own (batched), or inside the transaction of a change. */
export interface AuditSink {
  record(event: AuditEvent): Promise<void>;
  appendInTx(tx: Tx, events: readonly AuditEvent[]): Promise<void>;
  /**
   * Events a statement of the caller's already appended (a served read's, in the read's own statement): counted as
   * the others are, nothing written. As the caller built them: columns the statement filled in (a read's version)
   * may be missing here.
   */
  appended(events: readonly AuditEvent[]): void;
}
