import type { SecretRow, WriteCall, WriteResultRow } from './secrets.queries.ts';
import { fromSqlRow } from './secrets.queries.ts';

/** What one name of a call found or left: the row (none when absent) and its xmin, and its pattern verdict. */
export interface ItemResult {
  row: SecretRow | null;
  xmin: string | null;
  patternOk: boolean | null;
}

/** One request's outcome in a coffer.write_secrets statement. */
export type CallResult =
  | { outcome: 'identity_changed' | 'environment_not_found' | 'environment_protected' | 'key_retired' }
  | { outcome: 'bad_pattern'; index: number }
  | { outcome: 'failed'; code: string }
  | { outcome: 'ok' | 'stale' | 'format' | 'checked'; items: ItemResult[] };

let settledSeq = 0;

/** A submitted call, as later calls refer to it: settled once its statement has returned (result null: it failed). */
export class CallHandle {
  settled = false;
  result: CallResult | null = null;
  /** The order in which calls settled (their statements returned), process-wide: later knows better. */
  seq = 0;

  /** The calls this one's items were planned on top of (each once), until it settles. */
  private after: CallHandle[];

  constructor(after: readonly CallHandle[] = []) {
    this.after = [...new Set(after)];
  }

  /** Will not apply, or did not: it, or a call it was planned on top of, failed. */
  doomed(seen = new Set<CallHandle>()): boolean {
    if (this.settled) return this.result?.outcome !== 'ok';
    // Calls planned on top of each other form a graph that may join (bundles): visit each call once.
    seen.add(this);
    return this.after.some((h) => !seen.has(h) && h.doomed(seen));
  }

  settle(result: CallResult | null): void {
    this.settled = true;
    this.result = result;
    this.seq = ++settledSeq;
    this.after = [];
  }
}

/** An item planned on the row an earlier call (not yet committed when planned) will leave, with that row's MAC. */
export interface ChainRef {
  handle: CallHandle;
  /** The earlier call's item for the same secret. */
  item: number;
  mac: string;
}

/** A request's call, as the service builds it: its items refer to its own values, 1-based. */
export interface PendingCall {
  call: Omit<WriteCall, 'value_base'>;
  values: readonly string[];
  /** The data key the call's items were sealed for (their dek_version); only calls under the same key share a statement. */
  dekVersion: number;
  dekHex: string;
  /** Items planned on rows that earlier calls will leave: their expected xmin is known only once those are sent. */
  chains?: readonly { item: number; after: ChainRef }[];
  /**
   * Goes in a statement of its own: its values meet custom patterns, and a pattern that runs into the statement
   * timeout fails the whole statement, which must then be this call's alone.
   */
  alone?: boolean;
}

export interface SecretWriteBatcherOptions {
  send: (
    tenantId: string,
    calls: readonly WriteCall[],
    values: readonly string[],
    dekHex: string,
  ) => Promise<WriteResultRow[]>;
  /** Calls per statement at most (each applying call is a subtransaction; PostgreSQL caches 64 per transaction). */
  maxCalls?: number;
  /**
   * Statements of one tenant in flight at once. One by default: with two, the second's commit waits for the first's
   * on the tenant's chain head anyway, the batches halve, and a write cost more of both CPUs (bench, 10 writers).
   */
  maxInFlight?: number;
  /** Called after each statement with its number of calls (metrics). */
  observe?: (calls: number) => void;
}

interface Waiting {
  pending: PendingCall;
  handle: CallHandle;
  resolve: (r: CallResult) => void;
  reject: (err: unknown) => void;
}

/**
 * Group commit for secret writes, per tenant. A tenant's writes go one statement at a time: while one is in flight,
 * the writes that arrive wait for it, and then all go together in the next. So concurrent writers of one tenant
 * share one transaction, one WAL flush and one link onto the tenant's audit chain (whose head every commit of the
 * tenant would otherwise take in turn), and the batches grow with the load. Each call's outcome is its own
 * (coffer.write_secrets applies each in a subtransaction); a statement that fails as a whole (the commit refused by
 * the audit chain, the database gone) fails every call in it.
 *
 * A write may be planned on the row an earlier write of the same secret will leave (WriteLanes), before that one
 * has committed: then it goes in the same statement, checked against the row the earlier call left in it (its xmin
 * and MAC), or in a later one, checked against the xmin the earlier call returned. So the writers of one hot
 * secret share statements too, instead of each waiting for the commit of the one before.
 */
export class SecretWriteBatcher {
  private readonly lanes = new Map<string, { inFlight: number; queue: Waiting[] }>();
  private readonly maxCalls: number;
  private readonly maxInFlight: number;

  constructor(private readonly o: SecretWriteBatcherOptions) {
    this.maxCalls = o.maxCalls ?? 32;
    this.maxInFlight = o.maxInFlight ?? 1;
  }

  /** Queues the call at once (so a later call may chain on its handle); the result comes with its statement. */
  submit(tenantId: string, pending: PendingCall): { handle: CallHandle; result: Promise<CallResult> } {
    const handle = new CallHandle((pending.chains ?? []).map((c) => c.after.handle));
    const result = new Promise<CallResult>((resolve, reject) => {
      let lane = this.lanes.get(tenantId);
      if (!lane) {
        lane = { inFlight: 0, queue: [] };
        this.lanes.set(tenantId, lane);
      }
      lane.queue.push({ pending, handle, resolve, reject });
      this.pump(tenantId, lane);
    });
    return { handle, result };
  }

  private pump(tenantId: string, lane: { inFlight: number; queue: Waiting[] }): void {
    while (lane.inFlight < this.maxInFlight && lane.queue.length > 0) {
      // Calls sealed under another data key (a rotation in between) wait for a later statement, and so do calls
      // chained on a call that waits or is in a statement still in flight.
      const batch: Waiting[] = [];
      const inBatch = new Set<CallHandle>();
      const rest: Waiting[] = [];
      let dekVersion: number | undefined;
      let closed = false;
      for (const w of lane.queue) {
        const ready =
          !closed &&
          batch.length < this.maxCalls &&
          !(w.pending.alone && batch.length > 0) &&
          (dekVersion === undefined || w.pending.dekVersion === dekVersion) &&
          (w.pending.chains ?? []).every((c) => c.after.handle.settled || inBatch.has(c.after.handle));
        if (ready) {
          dekVersion ??= w.pending.dekVersion;
          batch.push(w);
          inBatch.add(w.handle);
          closed = w.pending.alone === true;
        } else rest.push(w);
      }
      if (batch.length === 0) {
        // Each waits on a statement in flight, whose return pumps again. With none in flight, what the first
        // chains on has returned: this cannot happen, but should it, the first goes, its chains counted as failed.
        if (lane.inFlight > 0) return;
        const first = rest.shift() as Waiting;
        batch.push(first);
        inBatch.add(first.handle);
      }
      lane.queue = rest;
      lane.inFlight++;
      void this.send(tenantId, batch, inBatch).finally(() => {
        lane.inFlight--;
        if (lane.queue.length > 0) this.pump(tenantId, lane);
        else if (lane.inFlight === 0 && this.lanes.get(tenantId) === lane) this.lanes.delete(tenantId);
      });
    }
  }

  private async send(tenantId: string, batch: Waiting[], inBatch: ReadonlySet<CallHandle>): Promise<void> {
    const calls: WriteCall[] = [];
    const values: string[] = [];
    for (const w of batch) {
      const items = [...w.pending.call.items];
      for (const { item, after } of w.pending.chains ?? []) {
        const planned = items[item];
        if (!planned) continue;
        if (inBatch.has(after.handle)) {
          items[item] = { ...planned, xmin: null, left_mac: after.mac };
        } else {
          // Sent before and returned: chained on what it left, or on nothing (it did not apply: this call is stale).
          const r = after.handle.result;
          const left = r?.outcome === 'ok' ? r.items[after.item]?.xmin : undefined;
          items[item] = { ...planned, xmin: left ?? 'none' };
        }
      }
      calls.push({ ...w.pending.call, items, value_base: values.length });
      values.push(...w.pending.values);
    }
    let rows: WriteResultRow[];
    try {
      rows = await this.o.send(tenantId, calls, values, (batch[0] as Waiting).pending.dekHex);
    } catch (err) {
      for (const w of batch) w.handle.settle(null);
      for (const w of batch) w.reject(err);
      return;
    }
    this.o.observe?.(batch.length);
    let results: (CallResult | undefined)[];
    try {
      results = collect(rows, batch.length);
    } catch (err) {
      for (const w of batch) w.handle.settle(null);
      for (const w of batch) w.reject(err);
      return;
    }
    batch.forEach((w, i) => {
      w.handle.settle(results[i] ?? null);
    });
    batch.forEach((w, i) => {
      const r = results[i];
      if (r) w.resolve(r);
      else w.reject(new Error(`coffer.write_secrets returned nothing for call ${i + 1}`));
    });
  }
}

/** The statement's rows, grouped by call (call_index is 1-based), items in order. */
function collect(rows: readonly WriteResultRow[], calls: number): (CallResult | undefined)[] {
  const out: (CallResult | undefined)[] = Array.from({ length: calls });
  for (const r of rows) {
    const i = r.call_index - 1;
    switch (r.outcome) {
      case 'identity_changed':
      case 'environment_not_found':
      case 'environment_protected':
      case 'key_retired':
        out[i] = { outcome: r.outcome };
        break;
      case 'bad_pattern':
        out[i] = { outcome: 'bad_pattern', index: r.item_index ?? 0 };
        break;
      case 'failed':
        out[i] = { outcome: 'failed', code: r.error_code ?? 'XX000' };
        break;
      case 'ok':
      case 'stale':
      case 'format':
      case 'checked': {
        const prev = out[i];
        const items = prev && 'items' in prev ? prev.items : [];
        items[r.item_index ?? items.length] = {
          row: r.secret ? fromSqlRow(r.secret) : null,
          xmin: r.row_xmin,
          patternOk: r.pattern_ok,
        };
        out[i] = { outcome: r.outcome, items };
        break;
      }
      default:
        throw new Error(`coffer.write_secrets returned an unknown outcome: ${r.outcome}`);
    }
  }
  return out;
}
