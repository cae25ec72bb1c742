import type pg from 'pg';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/**
 * Prometheus metrics. Labels are bounded: routes by their name in the route table (or "unmatched"), tenants
 * only as the top N by traffic (the rest are "other"), or not at all.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly httpRequests: Counter<'route' | 'method' | 'status'>;
  readonly httpDuration: Histogram<'route' | 'method' | 'status'>;
  readonly secretOps: Counter<'op' | 'tenant'>;
  readonly auditBatchSize: Histogram;
  readonly secretWriteBatchSize: Histogram;
  readonly secretReadBatchSize: Histogram;
  readonly auditCommitSeconds: Histogram;
  readonly poolWaitSeconds: Histogram;
  readonly logins: Counter<'outcome'>;
  readonly rateLimited: Counter<'kind'>;
  readonly rotations: Counter<'trigger' | 'outcome'>;
  readonly leases: Counter<'op'>;
  readonly rekeyMoved: Counter;
  readonly rekeyRemaining: Gauge<'tenant'>;
  private readonly tenantCounts = new Map<string, number>();
  private topTenants = new Set<string>();
  private lastRank = 0;

  constructor(private readonly o: { tenantLabels: 'none' | number }) {
    const r = this.registry;
    collectDefaultMetrics({ register: r, prefix: 'coffer_' });
    this.httpRequests = new Counter({
      name: 'coffer_http_requests_total',
      help: 'HTTP requests',
      labelNames: ['route', 'method', 'status'],
      registers: [r],
    });
    this.httpDuration = new Histogram({
      name: 'coffer_http_request_duration_seconds',
      help: 'HTTP request latency',
      labelNames: ['route', 'method', 'status'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [r],
    });
    this.secretOps = new Counter({
      name: 'coffer_secret_operations_total',
      help: 'Secret reads and writes',
      labelNames: ['op', 'tenant'],
      registers: [r],
    });
    this.auditBatchSize = new Histogram({
      name: 'coffer_audit_batch_size',
      help: 'Events per audit group commit',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
      registers: [r],
    });
    this.secretWriteBatchSize = new Histogram({
      name: 'coffer_secret_write_batch_size',
      help: 'Secret writes (PUTs and bundle writes) per group-committed write statement',
      buckets: [1, 2, 4, 8, 16, 32],
      registers: [r],
    });
    this.secretReadBatchSize = new Histogram({
      name: 'coffer_secret_read_batch_size',
      help: 'Secret reads (GET of one secret) per grouped read statement',
      buckets: [1, 2, 4, 8, 16, 32],
      registers: [r],
    });
    this.auditCommitSeconds = new Histogram({
      name: 'coffer_audit_commit_seconds',
      help: 'Latency of an audit group commit',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [r],
    });
    this.poolWaitSeconds = new Histogram({
      name: 'coffer_db_pool_wait_seconds',
      help: 'Time to obtain a database connection from the pool',
      buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
      registers: [r],
    });
    this.logins = new Counter({
      name: 'coffer_token_logins_total',
      help: 'Token logins by outcome',
      labelNames: ['outcome'],
      registers: [r],
    });
    this.rateLimited = new Counter({
      name: 'coffer_rate_limited_total',
      help: 'Requests refused by a rate limit',
      labelNames: ['kind'],
      registers: [r],
    });
    this.rotations = new Counter({
      name: 'coffer_rotations_total',
      help: 'Secret rotations',
      labelNames: ['trigger', 'outcome'],
      registers: [r],
    });
    this.leases = new Counter({
      name: 'coffer_leases_total',
      help: 'Dynamic-credential leases made, renewed and revoked, and revocations that failed for good',
      labelNames: ['op'],
      registers: [r],
    });
    this.rekeyMoved = new Counter({
      name: 'coffer_rekey_versions_total',
      help: 'Secret versions re-encrypted under a new data key',
      registers: [r],
    });
    this.rekeyRemaining = new Gauge({
      name: 'coffer_rekey_remaining_versions',
      help: 'Versions still sealed by a retiring data key, per tenant being re-keyed',
      labelNames: ['tenant'],
      registers: [r],
    });
  }

  /** Pool size gauges, and the wait for a connection timed on every checkout. */
  watchPool(pool: pg.Pool): void {
    const r = this.registry;
    new Gauge({
      name: 'coffer_db_pool_connections',
      help: 'Open connections',
      registers: [r],
      collect() {
        this.set(pool.totalCount);
      },
    });
    new Gauge({
      name: 'coffer_db_pool_idle',
      help: 'Idle connections',
      registers: [r],
      collect() {
        this.set(pool.idleCount);
      },
    });
    new Gauge({
      name: 'coffer_db_pool_waiting',
      help: 'Requests waiting for a connection',
      registers: [r],
      collect() {
        this.set(pool.waitingCount);
      },
    });
    const connect = pool.connect.bind(pool) as (
      cb?: (err: Error | undefined, client?: pg.PoolClient, done?: (release?: unknown) => void) => void,
    ) => unknown;
    const observe = this.poolWaitSeconds;
    // pg-pool's query() checks out through this.connect, so wrapping it times every query's wait as well.
    (pool as unknown as { connect: typeof connect }).connect = (cb) => {
      const end = observe.startTimer();
      if (typeof cb === 'function') {
        return connect((err, client, done) => {
          end();
          cb(err, client, done);
        });
      }
      return (connect() as Promise<pg.PoolClient>).then((c) => {
        end();
        return c;
      });
    };
  }

  /** A tenant label that cannot explode: the tenant's id only while it is among the top N by traffic. */
  tenantLabel(tenantId: string): string {
    if (this.o.tenantLabels === 'none') return 'all';
    this.tenantCounts.set(tenantId, (this.tenantCounts.get(tenantId) ?? 0) + 1);
    const now = Date.now();
    if (now - this.lastRank > 10_000) {
      this.lastRank = now;
      const n = this.o.tenantLabels;
      this.topTenants = new Set(
        [...this.tenantCounts]
          .sort((a, b) => b[1] - a[1])
          .slice(0, n)
          .map(([t]) => t),
      );
      if (this.tenantCounts.size > 100_000) this.tenantCounts.clear();
    }
    return this.topTenants.has(tenantId) ? tenantId : 'other';
  }
}

/** Counts what an audit event says happened (its action and outcome). */
export function countEvent(
  m: Metrics,
  e: { tenantId: string; action: string; outcome: string; details: Record<string, unknown> | null },
): void {
  switch (e.action) {
    case 'secrets.read':
    case 'bundles.read':
      if (e.outcome === 'allowed') m.secretOps.inc({ op: 'read', tenant: m.tenantLabel(e.tenantId) });
      break;
    case 'secrets.write':
      if (e.outcome === 'allowed') m.secretOps.inc({ op: 'write', tenant: m.tenantLabel(e.tenantId) });
      break;
    case 'auth.token':
      m.logins.inc({ outcome: e.outcome });
      break;
    case 'secrets.rotate':
      m.rotations.inc({ trigger: e.details?.trigger === 'scheduler' ? 'scheduler' : 'manual', outcome: e.outcome });
      break;
    case 'leases.create':
    case 'leases.renew':
      if (e.outcome === 'allowed') m.leases.inc({ op: e.action === 'leases.create' ? 'created' : 'renewed' });
      break;
    case 'leases.revoke':
      // One `allowed` event per revoked lease; one `error` event when a lease first becomes revoke_failed.
      m.leases.inc({ op: e.outcome === 'allowed' ? 'revoked' : 'revoke_failed' });
      break;
    default:
  }
}
