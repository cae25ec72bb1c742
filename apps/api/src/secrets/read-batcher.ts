/**
 * Group reads: the hot reads of one tenant that arrive while its read statement is in flight go together in the
 * next, one statement that runs coffer.read_secret once per read and appends the events of the reads it served
 * (secrets.queries.ts). Each read keeps its own outcome, row and identity check: the statement saves the round
 * trips, PostgreSQL's wake-ups and the protocol work each read paid on its own, and one commit carries all their
 * events, as the audit group commit did. One statement per tenant at a time, so that reads wait for the next rather
 * than start a second statement and a second commit: two in flight halve the batches, double the commits, and
 * queue on the tenant's chain head anyway (docs/performance.md). A read alone goes at once.
 */

import type { AuditEvent } from '../audit/audit.types.ts';

/** One read as coffer.read_secret takes it (the tenant and its data keys are the lane's). */
export interface ReadCall {
  identityId: string;
  revision: number;
  environment: string;
  kind: string;
  owner: string;
  name: string;
  version: number | null;
  previous: boolean;
  /** The read's audit event, appended by the read's own statement if the read is served (version filled in). */
  event: AuditEvent | null;
}

export interface ReadBatcherOptions<Row> {
  /** One read on its own: coffer.read_secret. */
  one: (tenantId: string, call: ReadCall, keys: readonly (string | null)[]) => Promise<Row>;
  /** Several in one statement, a row for each, in their order. */
  many: (tenantId: string, calls: readonly ReadCall[], keys: readonly (string | null)[]) => Promise<Row[]>;
  /** Whether a statement's error is one read's doing (a ciphertext not under its key), not the statement's. */
  isItemError: (err: unknown) => boolean;
  /** Reads per statement at most. */
  maxReads?: number;
  /** Statements of one tenant in flight at once. */
  maxInFlight?: number;
  /** Called after each statement with its number of reads (metrics). */
  observe?: (reads: number) => void;
}

interface Waiting<Row> {
  call: ReadCall;
  keys: readonly (string | null)[];
  resolve: (r: Row) => void;
  reject: (err: unknown) => void;
}

interface Lane<Row> {
  inFlight: number;
  queue: Waiting<Row>[];
}

const sameKeys = (a: readonly (string | null)[], b: readonly (string | null)[]) =>
  a === b || (a.length === b.length && a.every((k, i) => k === b[i]));

export class ReadBatcher<Row> {
  private readonly lanes = new Map<string, Lane<Row>>();
  private readonly maxReads: number;
  private readonly maxInFlight: number;

  constructor(private readonly o: ReadBatcherOptions<Row>) {
    this.maxReads = o.maxReads ?? 32;
    this.maxInFlight = o.maxInFlight ?? 1;
  }

  read(tenantId: string, call: ReadCall, keys: readonly (string | null)[]): Promise<Row> {
    return new Promise<Row>((resolve, reject) => {
      let lane = this.lanes.get(tenantId);
      if (!lane) {
        lane = { inFlight: 0, queue: [] };
        this.lanes.set(tenantId, lane);
      }
      lane.queue.push({ call, keys, resolve, reject });
      this.pump(tenantId, lane);
    });
  }

  private pump(tenantId: string, lane: Lane<Row>): void {
    while (lane.inFlight < this.maxInFlight && lane.queue.length > 0) {
      // One statement carries one key set: reads made with another (the keys reloaded in between) wait for the next.
      // Each request has its own copy of the keys (the cache zeroes its buffers on eviction), so compare contents.
      const keys = (lane.queue[0] as Waiting<Row>).keys;
      const batch: Waiting<Row>[] = [];
      const rest: Waiting<Row>[] = [];
      for (const w of lane.queue) {
        if (batch.length < this.maxReads && sameKeys(w.keys, keys)) batch.push(w);
        else rest.push(w);
      }
      lane.queue = rest;
      lane.inFlight++;
      void this.send(tenantId, batch, keys).finally(() => {
        lane.inFlight--;
        if (lane.queue.length > 0) this.pump(tenantId, lane);
        else if (lane.inFlight === 0 && this.lanes.get(tenantId) === lane) this.lanes.delete(tenantId);
      });
    }
  }

  private async send(tenantId: string, batch: Waiting<Row>[], keys: readonly (string | null)[]): Promise<void> {
    this.o.observe?.(batch.length);
    if (batch.length === 1) {
      const [w] = batch as [Waiting<Row>];
      await this.o.one(tenantId, w.call, keys).then(w.resolve, w.reject);
      return;
    }
    let rows: Row[];
    try {
      rows = await this.o.many(
        tenantId,
        batch.map((w) => w.call),
        keys,
      );
    } catch (err) {
      if (!this.o.isItemError(err)) {
        for (const w of batch) w.reject(err);
        return;
      }
      // One read's ciphertext failed and took the statement with it: each read again on its own, so that only that
      // one fails, and the others get their values.
      await Promise.all(batch.map((w) => this.o.one(tenantId, w.call, keys).then(w.resolve, w.reject)));
      return;
    }
    if (rows.length !== batch.length) {
      const err = new Error(`coffer.read_secret returned ${rows.length} rows for ${batch.length} reads`);
      for (const w of batch) w.reject(err);
      return;
    }
    for (const [i, w] of batch.entries()) w.resolve(rows[i] as Row);
  }
}
