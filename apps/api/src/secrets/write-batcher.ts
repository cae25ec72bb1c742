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

/** A request's call, as the service builds it: its items refer to its own values, 1-based. */
export interface PendingCall {
  call: Omit<WriteCall, 'value_base'>;
  values: readonly string[];
  /** The data key the call's items were sealed for (their dek_version); only calls under the same key share a statement. */
  dekVersion: number;
  dekHex: string;
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
  /** Called after each statement with its number of calls (metrics). */
  observe?: (calls: number) => void;
}

interface Waiting {
  pending: PendingCall;
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
 */
export class SecretWriteBatcher {
  private readonly lanes = new Map<string, { inFlight: boolean; queue: Waiting[] }>();
  private readonly maxCalls: number;

  constructor(private readonly o: SecretWriteBatcherOptions) {
    this.maxCalls = o.maxCalls ?? 32;
  }

  submit(tenantId: string, pending: PendingCall): Promise<CallResult> {
    return new Promise((resolve, reject) => {
      let lane = this.lanes.get(tenantId);
      if (!lane) {
        lane = { inFlight: false, queue: [] };
        this.lanes.set(tenantId, lane);
      }
      lane.queue.push({ pending, resolve, reject });
      if (!lane.inFlight) void this.flush(tenantId, lane);
    });
  }

  private async flush(tenantId: string, lane: { inFlight: boolean; queue: Waiting[] }): Promise<void> {
    lane.inFlight = true;
    try {
      while (lane.queue.length > 0) {
        // Calls sealed under another data key (a rotation in between) wait for the next statement.
        const first = lane.queue[0] as Waiting;
        const batch: Waiting[] = [];
        const rest: Waiting[] = [];
        for (const w of lane.queue) {
          if (batch.length < this.maxCalls && w.pending.dekVersion === first.pending.dekVersion) batch.push(w);
          else rest.push(w);
        }
        lane.queue = rest;
        await this.send(tenantId, batch);
      }
    } finally {
      lane.inFlight = false;
      if (lane.queue.length === 0 && this.lanes.get(tenantId) === lane) this.lanes.delete(tenantId);
    }
  }

  private async send(tenantId: string, batch: Waiting[]): Promise<void> {
    const calls: WriteCall[] = [];
    const values: string[] = [];
    for (const w of batch) {
      calls.push({ ...w.pending.call, value_base: values.length });
      values.push(...w.pending.values);
    }
    let rows: WriteResultRow[];
    try {
      rows = await this.o.send(tenantId, calls, values, (batch[0] as Waiting).pending.dekHex);
    } catch (err) {
      for (const w of batch) w.reject(err);
      return;
    }
    this.o.observe?.(batch.length);
    const results = collect(rows, batch.length);
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
