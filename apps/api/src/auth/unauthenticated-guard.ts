import type { AuditEvent } from '../audit/audit.types.ts';

export interface UnauthenticatedGuardOptions {
  /** Failed authentications a source may make per window before it is refused unverified. */
  failuresPerWindow: number;
  windowMs: number;
  record: (event: AuditEvent) => Promise<void>;
  onError: (err: unknown) => void;
  /** Sources and aggregates kept at most; past that the oldest go (aggregates are written first). */
  maxEntries?: number;
  now?: () => number;
}

interface Aggregate {
  since: number;
  /** Refusals after the first, which was written as it happened. */
  count: number;
  last: AuditEvent | null;
}

/**
 * Requests that fail authentication cost the caller nothing and used to cost us one durable audit row each: a
 * flood of garbage tokens was a flood of fsyncs. Two limits, both before any token work:
 * - failures are counted per source address, and past the budget the source is refused (429) for the rest of
 *   the window without its token being verified;
 * - identical refusals (same source, route, code and reason) are written once per window: the first as it
 *   happens (durable before its response, as every refusal's), the rest counted and written as one event at the
 *   window's end with `details.count`, so the log still says how many there were and from where.
 */
export class UnauthenticatedGuard {
  private readonly failures = new Map<string, { count: number; since: number }>();
  private readonly aggregates = new Map<string, Aggregate>();
  private readonly timer: NodeJS.Timeout;
  private readonly maxEntries: number;
  private readonly now: () => number;
  private readonly pending = new Set<Promise<void>>();

  constructor(private readonly o: UnauthenticatedGuardOptions) {
    this.maxEntries = o.maxEntries ?? 10_000;
    this.now = o.now ?? Date.now;
    // A flood's counted refusals must reach the log even if nothing else happens; unref'd so it never holds the
    // process open.
    this.timer = setInterval(() => this.flush(false), Math.max(1_000, Math.floor(o.windowMs / 4)));
    this.timer.unref();
  }

  /** Seconds until `source` may try again, or 0 when it may. */
  retryAfterSeconds(source: string): number {
    const f = this.failures.get(source);
    if (!f) return 0;
    const left = f.since + this.o.windowMs - this.now();
    if (left <= 0) {
      this.failures.delete(source);
      return 0;
    }
    return f.count >= this.o.failuresPerWindow ? Math.ceil(left / 1000) : 0;
  }

  recordFailure(source: string): void {
    const now = this.now();
    const f = this.failures.get(source);
    if (f && now - f.since < this.o.windowMs) {
      f.count++;
      return;
    }
    this.failures.delete(source);
    this.failures.set(source, { count: 1, since: now });
    if (this.failures.size > this.maxEntries) {
      const oldest = this.failures.keys().next().value;
      if (oldest !== undefined) this.failures.delete(oldest);
    }
  }

  /** Audits a refusal of an unauthenticated request: resolves once it is durable, or at once when only counted. */
  refusal(event: AuditEvent, route: string, reason: string): Promise<void> {
    const key = JSON.stringify([
      event.sourceIp,
      route,
      event.errorCode,
      reason,
      event.tenantId,
      event.actorId,
      event.details,
    ]);
    const now = this.now();
    const a = this.aggregates.get(key);
    if (a && now - a.since < this.o.windowMs) {
      a.count++;
      a.last = event;
      return Promise.resolve();
    }
    if (a) this.write(a);
    this.aggregates.delete(key);
    this.aggregates.set(key, { since: now, count: 0, last: null });
    if (this.aggregates.size > this.maxEntries) {
      const [oldestKey, oldest] = this.aggregates.entries().next().value ?? [];
      if (oldestKey !== undefined && oldest) {
        this.write(oldest);
        this.aggregates.delete(oldestKey);
      }
    }
    return this.o.record(event);
  }

  /** Writes the aggregates whose window has ended (all of them when `all`), and waits for what is in flight. */
  async flush(all = true): Promise<void> {
    const now = this.now();
    for (const [key, a] of this.aggregates) {
      if (all || now - a.since >= this.o.windowMs) {
        this.write(a);
        this.aggregates.delete(key);
      }
    }
    await Promise.all(this.pending);
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush(true);
  }

  private write(a: Aggregate): void {
    if (a.count === 0 || !a.last) return;
    const { requestId, details, ...rest } = a.last;
    const event: AuditEvent = {
      ...rest,
      occurredAt: new Date(this.now()),
      // Many requests: no one request id, the last is kept for correlation with the access log.
      requestId: null,
      details: {
        ...details,
        count: a.count,
        windowSeconds: Math.round(this.o.windowMs / 1000),
        lastRequestId: requestId,
      },
    };
    const p = this.o.record(event).catch(this.o.onError);
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }
}
