/** What the read cache keeps: values served within `ttlMs`, re-fetched every `refreshMs` in the background. */
export interface CacheOptions {
  /** How long a fetched value is served without asking the server again. */
  ttlMs: number;
  /**
   * Poll the server this often for every cached secret and bundle; a changed version replaces the cached value.
   * A poll that succeeds renews the entry, so with `refreshMs < ttlMs` reads never wait for the server; a poll that
   * fails leaves the entry to expire at its ttl. Omit to refresh only on read (after ttl) or on `invalidate`.
   */
  refreshMs?: number;
  /** Called after a poll found a new version: the secret's path, or `kind/owner` for a bundle. Never the value. */
  onChange?: (path: string) => void;
}

interface Entry {
  data: unknown;
  /** The versions the data stands for: a change of signature is a change of value. */
  signature: string;
  fetchedAt: number;
  /** Version-pinned reads never change, so polling them is wasted work. */
  pinned: boolean;
  path: string;
  load: () => Promise<{ data: unknown; signature: string }>;
}

/**
 * Keyed by what was read (a secret at its current or a given version, or a bundle); concurrent misses of one key
 * share one request. Values live only in this process's memory.
 */
export class ReadCache {
  private readonly entries = new Map<string, Entry>();
  private readonly inflight = new Map<string, Promise<unknown>>();
  private timer: ReturnType<typeof setInterval> | null = null;
  private polling = false;
  /** Bumped by invalidate, so a fetch that started before it cannot put a stale value back. */
  private generation = 0;

  constructor(
    private readonly o: CacheOptions,
    private readonly now: () => number,
  ) {
    if (o.refreshMs !== undefined && o.refreshMs > 0) {
      this.timer = setInterval(() => void this.refresh(), o.refreshMs);
      // A cache must never be the reason a process stays alive.
      this.timer.unref?.();
    }
  }

  async read<T>(
    key: string,
    path: string,
    pinned: boolean,
    load: () => Promise<{ data: T; signature: string }>,
  ): Promise<T> {
    const hit = this.entries.get(key);
    if (hit && this.now() - hit.fetchedAt < this.o.ttlMs) return hit.data as T;
    const pending = this.inflight.get(key);
    if (pending) return pending as Promise<T>;
    const generation = this.generation;
    const p = load()
      .then((fresh) => {
        if (generation === this.generation) {
          this.entries.set(key, { ...fresh, fetchedAt: this.now(), pinned, path, load });
        }
        return fresh.data;
      })
      .finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }

  /** One pass over every entry: re-fetch, replace what changed. Errors keep the old entry until its ttl. */
  async refresh(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      await Promise.all(
        [...this.entries].map(async ([key, entry]) => {
          if (entry.pinned) return;
          const generation = this.generation;
          try {
            const fresh = await entry.load();
            if (generation !== this.generation || this.entries.get(key) !== entry) return;
            this.entries.set(key, { ...entry, ...fresh, fetchedAt: this.now() });
            if (fresh.signature !== entry.signature) this.o.onChange?.(entry.path);
          } catch {
            // Keep serving what we have until the ttl says otherwise; the next read will surface the error.
          }
        }),
      );
    } finally {
      this.polling = false;
    }
  }

  /** Drops a secret (`kind/owner/name`: every version of it and its bundle) or a bundle (`kind/owner`: all of it). */
  invalidate(path: string): void {
    this.generation++;
    const parts = path.split('/');
    const owner = parts.slice(0, 2).join('/');
    for (const [key, entry] of this.entries) {
      const hit =
        parts.length >= 3
          ? entry.path === path || entry.path === owner
          : entry.path === owner || entry.path.startsWith(`${owner}/`);
      if (hit) this.entries.delete(key);
    }
  }

  clear(): void {
    this.generation++;
    this.entries.clear();
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.clear();
  }
}
