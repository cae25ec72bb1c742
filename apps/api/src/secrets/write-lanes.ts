import type { SecretRow } from './secrets.queries.ts';
import type { ChainRef } from './write-batcher.ts';

/**
 * What the next write of a secret is planned on: the row as a statement last found or left it, with its xmin; or
 * the row a write sent but not yet committed will leave (`pending`, no xmin yet), to be chained to it.
 */
export type KnownRow =
  | { row: SecretRow; xmin: string; pending?: undefined }
  | { row: SecretRow; xmin: null; pending: ChainRef };

interface Entry {
  /** The newest row a statement returned, and the order its call settled in (CallHandle.seq). */
  confirmed?: { row: SecretRow; xmin: string; seq: number };
  /** The row the last write planned of it will leave. */
  predicted?: { row: SecretRow; ref: ChainRef };
  at: number;
}

export interface WriteLanesOptions {
  /** Rows remembered at most (least recently used go first). */
  maxKnown?: number;
  /** How long a remembered row is planned on before it is read again. */
  knownTtlMs?: number;
}

/**
 * Writes of one secret in this process are planned one at a time, in arrival order, each on the row the one before
 * it will leave (sent, perhaps not yet committed: SecretWriteBatcher chains the two). Without this, concurrent
 * writers of one secret would all plan on the same row, and all but one would find it moved and plan again: a
 * retry storm whose work grows with the square of the writers. A lane is held only while a write is planned and
 * queued, not while it commits. A bundle takes the lanes of all its names, in sorted order, so two bundles cannot
 * wait on each other in a cycle.
 *
 * The rows remembered are metadata only (never a value), and a guess: coffer.write_secrets refuses a write planned
 * on a row that has moved since (another replica, a PATCH, a rotation, a chained write that failed) and answers
 * with the row as it is, which is then remembered. A row not remembered is planned on as absent (a create), which
 * costs nothing more when it is.
 */
export class WriteLanes {
  private readonly tails = new Map<string, Promise<void>>();
  private readonly rows = new Map<string, Entry>();
  private readonly maxKnown: number;
  private readonly ttlMs: number;

  constructor(o: WriteLanesOptions = {}) {
    this.maxKnown = o.maxKnown ?? 4096;
    this.ttlMs = o.knownTtlMs ?? 60_000;
  }

  static key(tenantId: string, p: { environment: string; kind: string; owner: string; name: string }): string {
    return `${tenantId}\u0000${p.environment}\u0000${p.kind}\u0000${p.owner}\u0000${p.name}`;
  }

  /** Runs `fn` holding the lanes of `keys`. */
  async run<T>(keys: readonly string[], fn: () => Promise<T>): Promise<T> {
    const releases: (() => void)[] = [];
    try {
      for (const k of [...new Set(keys)].sort()) releases.push(await this.acquire(k));
      return await fn();
    } finally {
      for (const release of releases) release();
    }
  }

  known(key: string): KnownRow | undefined {
    const e = this.rows.get(key);
    if (!e) return undefined;
    if (Date.now() - e.at > this.ttlMs) {
      this.rows.delete(key);
      return undefined;
    }
    const p = e.predicted;
    // Still to return, and nothing it was planned on top of has failed: plan on top of it.
    if (p && !p.ref.handle.settled && !p.ref.handle.doomed()) return { row: p.row, xmin: null, pending: p.ref };
    const confirmed = newest(e);
    return confirmed ? { row: confirmed.row, xmin: confirmed.xmin } : undefined;
  }

  /** The row a write just queued will leave: the next write of `key` is planned on it. */
  predict(key: string, row: SecretRow, ref: ChainRef): void {
    const e = this.rows.get(key);
    // The prediction this one replaces may have returned already, before its writer took note: keep what it left.
    const confirmed = e ? newest(e) : undefined;
    this.touch(key, { ...(confirmed ? { confirmed } : {}), predicted: { row, ref }, at: Date.now() });
  }

  /**
   * What a write learnt of `key` once its statement returned: the row it left, or the row as it is (or none), as
   * of the order its call settled in; an older answer never replaces a newer one.
   */
  settle(key: string, handle: ChainRef['handle'], row: SecretRow | null, xmin: string | null): void {
    const e = this.rows.get(key);
    if (e?.confirmed && e.confirmed.seq > handle.seq) return;
    const predicted = e?.predicted && !e.predicted.ref.handle.settled ? { predicted: e.predicted } : {};
    if (row && xmin !== null)
      this.touch(key, { confirmed: { row, xmin, seq: handle.seq }, ...predicted, at: Date.now() });
    else if (predicted.predicted) this.touch(key, { ...predicted, at: Date.now() });
    else this.rows.delete(key);
  }

  private touch(key: string, entry: Entry): void {
    this.rows.delete(key);
    this.rows.set(key, entry);
    if (this.rows.size > this.maxKnown) {
      const oldest = this.rows.keys().next().value;
      if (oldest !== undefined) this.rows.delete(oldest);
    }
  }

  private async acquire(key: string): Promise<() => void> {
    const before = this.tails.get(key);
    let release = () => {};
    const mine = new Promise<void>((resolve) => {
      release = resolve;
    });
    const tail = before ? before.then(() => mine) : mine;
    this.tails.set(key, tail);
    if (before) await before;
    return () => {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    };
  }
}

/** The newest row a statement returned for an entry: its confirmed row, or what its predicted write left since. */
function newest(e: Entry): Entry['confirmed'] {
  const h = e.predicted?.ref.handle;
  const left = h?.result?.outcome === 'ok' ? h.result.items[e.predicted?.ref.item ?? -1] : undefined;
  if (h && left?.row && left.xmin !== null && h.seq > (e.confirmed?.seq ?? 0)) {
    return { row: left.row, xmin: left.xmin, seq: h.seq };
  }
  return e.confirmed;
}
