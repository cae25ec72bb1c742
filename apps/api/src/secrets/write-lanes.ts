import type { SecretRow } from './secrets.queries.ts';

/** A secret row as a write last saw it, with its xmin: what the next write of it is planned on. */
export interface KnownRow {
  row: SecretRow;
  xmin: string;
}

export interface WriteLanesOptions {
  /** Rows remembered at most (least recently used go first). */
  maxKnown?: number;
  /** How long a remembered row is planned on before it is read again. */
  knownTtlMs?: number;
}

/**
 * Writes of one secret in this process go one at a time, in arrival order, and each is planned on the row the one
 * before it left. Without this, concurrent writers of one secret would all plan on the same row, and all but one
 * would find it moved and plan again: a retry storm whose work grows with the square of the writers. A bundle
 * takes the lanes of all its names, in sorted order, so two bundles cannot wait on each other in a cycle.
 *
 * The rows remembered are metadata only (never a value), and a guess: coffer.write_secrets refuses a write planned
 * on a row that has moved since (another replica, a PATCH, a rotation) and answers with the row as it is, which is
 * then remembered. A row not remembered is planned on as absent (a create), which costs nothing more when it is.
 */
export class WriteLanes {
  private readonly tails = new Map<string, Promise<void>>();
  private readonly rows = new Map<string, KnownRow & { at: number }>();
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
    const hit = this.rows.get(key);
    if (!hit) return undefined;
    if (Date.now() - hit.at > this.ttlMs) {
      this.rows.delete(key);
      return undefined;
    }
    return hit;
  }

  /** What a statement found or left for `key`: a row, or none (absent). */
  remember(key: string, row: SecretRow | null, xmin: string | null): void {
    this.rows.delete(key);
    if (!row || xmin === null) return;
    this.rows.set(key, { row, xmin, at: Date.now() });
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
