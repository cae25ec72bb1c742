/** Counts per key in fixed windows, bounded: past `maxEntries` the oldest entries go first. */
class FixedWindows {
  private readonly entries = new Map<string, { count: number; windowStart: number }>();

  constructor(
    private readonly windowMs: number,
    private readonly maxEntries: number,
    private readonly now: () => number,
  ) {}

  /** The count in the current window, and the milliseconds left of it. */
  get(key: string): { count: number; leftMs: number } {
    const e = this.entries.get(key);
    if (!e) return { count: 0, leftMs: 0 };
    const elapsed = this.now() - e.windowStart;
    if (elapsed >= this.windowMs) {
      this.entries.delete(key);
      return { count: 0, leftMs: 0 };
    }
    return { count: e.count, leftMs: this.windowMs - elapsed };
  }

  add(key: string): void {
    const now = this.now();
    const e = this.entries.get(key);
    if (e && now - e.windowStart < this.windowMs) {
      e.count++;
      return;
    }
    this.entries.delete(key);
    this.entries.set(key, { count: 1, windowStart: now });
    if (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
  }

  delete(key: string): void {
    this.entries.delete(key);
  }
}

export interface LoginThrottleOptions {
  maxFailures: number;
  windowMs: number;
  /** Added to every attempt on a client id per failure past `maxFailures` (all sources together). */
  slowDownStepMs?: number;
  maxSlowDownMs?: number;
  maxEntries?: number;
  now?: () => number;
}

/**
 * Failed logins, in fixed windows. A lockout keyed by client id alone let anyone lock out any client id (`root`
 * included) with a handful of wrong secrets from anywhere. So the lockout is keyed by client id and source
 * together: after `maxFailures` failures a (client id, source) pair is refused (429) until its window ends, while
 * the same client id from a source that has not failed still logs in. Against an attack spread over many sources,
 * failures of a client id from all of them slow every attempt on it down (a delay, never a refusal).
 * Applied to any client id string, so neither says anything about which ids exist.
 */
export class LoginThrottle {
  private readonly perSource: FixedWindows;
  private readonly perClient: FixedWindows;
  private readonly maxFailures: number;
  private readonly slowDownStepMs: number;
  private readonly maxSlowDownMs: number;

  constructor(o: LoginThrottleOptions) {
    const now = o.now ?? Date.now;
    const maxEntries = o.maxEntries ?? 100_000;
    this.perSource = new FixedWindows(o.windowMs, maxEntries, now);
    this.perClient = new FixedWindows(o.windowMs, maxEntries, now);
    this.maxFailures = o.maxFailures;
    this.slowDownStepMs = o.slowDownStepMs ?? 100;
    this.maxSlowDownMs = o.maxSlowDownMs ?? 2_000;
  }

  private static pair(clientId: string, source: string | null): string {
    return `${source ?? ''}\u0000${clientId}`;
  }

  /** Seconds until this source may try this client id again, or 0 when it may try now. */
  retryAfterSeconds(clientId: string, source: string | null): number {
    const { count, leftMs } = this.perSource.get(LoginThrottle.pair(clientId, source));
    return count >= this.maxFailures ? Math.ceil(leftMs / 1000) : 0;
  }

  /** How long to hold an attempt on this client id before checking it: 0 unless it is under attack. */
  slowDownMs(clientId: string): number {
    const over = this.perClient.get(clientId).count - this.maxFailures + 1;
    return over > 0 ? Math.min(this.maxSlowDownMs, over * this.slowDownStepMs) : 0;
  }

  recordFailure(clientId: string, source: string | null): void {
    this.perSource.add(LoginThrottle.pair(clientId, source));
    this.perClient.add(clientId);
  }

  /** Clears only this source's failures: the client id's slow-down lasts as long as the attack's window. */
  recordSuccess(clientId: string, source: string | null): void {
    this.perSource.delete(LoginThrottle.pair(clientId, source));
  }
}
