/**
 * Bearer tokens whose identity has used up its request budget for the current window, and until when.
 *
 * Only the rate limiter adds to it, after it has verified the token, loaded its identity and counted the identity
 * over its limit. Until that window ends, a request carrying the same token is refused at once, before its
 * signature is checked again or its identity loaded: a flood past the limit then costs little more than parsing
 * its requests, and leaves the CPU to the neighbours that stay within theirs. The first request of the next
 * window goes the whole way again, so a raised limit, a revoked identity or a new key take effect as before, at
 * most one window (a second) late for a caller that is being refused anyway.
 *
 * Such a refusal is also held back a little (`pauseMs`: at most `maxPauseMs`, never past the window's end), as
 * nginx's limit_req delays excess requests: a client that ignores Retry-After and keeps every connection busy is
 * slowed to a few refusals per connection per second instead of thousands, and a client that honours it never
 * sees the pause (its next request comes after the window).
 *
 * Entries are keyed by the token's signature, never the whole token: what is kept in memory cannot be replayed.
 * A forged token that borrows a refused token's signature is refused too, which is what it would get anyway.
 */
export class OverLimitTokens {
  private readonly entries = new Map<string, { until: number; max: number }>();

  constructor(
    private readonly maxEntries = 10_000,
    private readonly maxPauseMs = 250,
  ) {}

  /** The signature of a `Bearer <jwt>` header, or null when the header has no such shape. */
  static keyOf(authorization: string | undefined): string | null {
    if (!authorization?.startsWith('Bearer ')) return null;
    const dot = authorization.lastIndexOf('.');
    const signature = dot > 0 ? authorization.slice(dot + 1) : '';
    return signature.length >= 32 ? signature : null;
  }

  add(key: string, ttlMs: number, max: number, now = Date.now()): void {
    if (ttlMs <= 0) return;
    if (this.entries.size >= this.maxEntries && !this.entries.has(key)) this.evict(now);
    this.entries.set(key, { until: now + ttlMs, max });
  }

  /** The limit and the seconds left in the window when `key` is still refused, else null. */
  check(
    key: string,
    now = Date.now(),
  ): { max: number; retryAfterSeconds: number; ttlMs: number; pauseMs: number } | null {
    const e = this.entries.get(key);
    if (!e) return null;
    const ttlMs = e.until - now;
    if (ttlMs <= 0) {
      this.entries.delete(key);
      return null;
    }
    return {
      max: e.max,
      retryAfterSeconds: Math.max(1, Math.ceil(ttlMs / 1000)),
      ttlMs,
      pauseMs: Math.min(ttlMs, this.maxPauseMs),
    };
  }

  get size(): number {
    return this.entries.size;
  }

  /** Drops the expired entries; when none had expired, the oldest one (insertion order). */
  private evict(now: number): void {
    for (const [k, e] of this.entries) if (e.until <= now) this.entries.delete(k);
    if (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
  }
}
