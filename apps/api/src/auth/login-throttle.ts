/**
 * Failed logins per client id, in fixed windows: after `maxFailures` failures in a window the client id is
 * refused (429) until the window ends, whatever secret is tried. Applied to any client id string, so a refusal
 * says nothing about which ids exist. Bounded: the oldest entries go first.
 */
export class LoginThrottle {
  private readonly failures = new Map<string, { count: number; windowStart: number }>();

  constructor(
    private readonly maxFailures: number,
    private readonly windowMs: number,
    private readonly maxEntries = 100_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Seconds until the client id may try again, or 0 when it may try now. */
  retryAfterSeconds(clientId: string): number {
    const e = this.failures.get(clientId);
    if (!e) return 0;
    const elapsed = this.now() - e.windowStart;
    if (elapsed >= this.windowMs) {
      this.failures.delete(clientId);
      return 0;
    }
    return e.count >= this.maxFailures ? Math.ceil((this.windowMs - elapsed) / 1000) : 0;
  }

  recordFailure(clientId: string): void {
    const now = this.now();
    const e = this.failures.get(clientId);
    if (e && now - e.windowStart < this.windowMs) {
      e.count++;
      return;
    }
    this.failures.delete(clientId);
    this.failures.set(clientId, { count: 1, windowStart: now });
    if (this.failures.size > this.maxEntries) {
      const oldest = this.failures.keys().next().value;
      if (oldest !== undefined) this.failures.delete(oldest);
    }
  }

  recordSuccess(clientId: string): void {
    this.failures.delete(clientId);
  }
}
