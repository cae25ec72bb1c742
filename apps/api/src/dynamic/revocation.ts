import { type Action, DEFAULT_ENVIRONMENT, type SecretKind } from '@coffer/contracts';
import type { Logger } from 'pino';
import { auditEvent, systemEvent } from '../audit/audit.events.ts';
import type { AuditSink } from '../audit/audit.sink.ts';
import type { AuditEvent } from '../audit/audit.types.ts';
import { authorize } from '../auth/authorize.ts';
import type { Principal } from '../auth/principal.ts';
import type { RowMacs } from '../crypto/row-macs.ts';
import type { TenantKeyCache } from '../crypto/tenant-key-cache.ts';
import type { Database } from '../db/database.ts';
import { pgErrorCode } from '../db/pg-errors.ts';
import { AppError, forbidden } from '../errors/app-error.ts';
import type { RequestContext } from '../http/request-context.ts';
import { checkRowMacs, unbind } from '../secrets/secret-reads.service.ts';
import type { SecretPath, SecretQueries } from '../secrets/secrets.queries.ts';
import type { WebhookQueries } from '../webhooks/webhooks.queries.ts';
import type { BackendRow, ClaimedLease, DynamicQueries } from './dynamic.queries.ts';
import type { DynamicSeals } from './seal.ts';
import { describeTargetError, type TargetConnections, TargetMisconfigured } from './target.ts';
import { type ParsedStatement, parseStatement, type StatementKind, TemplateProblem } from './templates.ts';

/** Attempts (about two and a half minutes of backoff) before a lease is reported `revoke_failed`. */
export const MAX_ATTEMPTS = 6;
const BACKOFF_BASE_MS = 5_000;
const FAILED_RETRY_MS = 3_600_000;

export interface DynamicDeps {
  db: Pick<Database, 'withTenant'>;
  queries: DynamicQueries;
  targets: TargetConnections;
  /** The connection secret is read through the secrets' own statement, its row MACs checked. */
  secrets: Pick<SecretQueries, 'checkRows'>;
  macs: Pick<RowMacs, 'checkSecret' | 'checkVersion'>;
  keys: Pick<TenantKeyCache, 'get' | 'invalidate'>;
  audit: AuditSink;
  webhooks: Pick<WebhookQueries, 'enqueueInTx'>;
  seals: DynamicSeals;
  log: Logger;
  /**
   * How long a worker's claim on a lease lasts: past it, another worker takes the revocation over (after a crash).
   * A worker still busy then only duplicates work, never the revocation (see TargetConnections.revoke).
   */
  claimMs: number;
}

/** Parses stored statements again (they were checked when the backend was configured). */
export function parsedStatements(texts: readonly string[], kind: StatementKind): ParsedStatement[] {
  try {
    return texts.map((t) => parseStatement(t, kind));
  } catch (err) {
    if (err instanceof TemplateProblem) throw new TargetMisconfigured(`a ${kind} statement: ${err.message}`);
    throw err;
  }
}

/**
 * Dynamic resources (`dynamic/<backend>`) belong to no environment: their policies are matched as in `default`, so
 * a policy that names environments grants no backend unless it names `default` too.
 */
export function requireLeaseAllowed(p: Principal, action: Action, backend: string): void {
  const d = authorize(p, action, `dynamic/${backend}`);
  if (!d.allowed) throw forbidden(d.reason);
}

/**
 * Where a backend's connection secret lives: `kind/owner/name` in the tenant's default environment, or
 * `kind/owner/name@environment` in another (the `@` form the binding line uses; no secret name holds an `@`).
 */
export function connectionSecretPath(ref: string): SecretPath {
  const at = ref.indexOf('@');
  const [kind, owner, name] = (at < 0 ? ref : ref.slice(0, at)).split('/') as [SecretKind, string, string];
  return { environment: at < 0 ? DEFAULT_ENVIRONMENT : ref.slice(at + 1), kind, owner, name };
}

/**
 * The admin connection URL a backend names: the current value of that Coffer secret, read as every server-side read
 * is (the check's statement: live, unexpired, current version only), its row MACs checked and its binding line
 * matched to this tenant, secret, version and path, then handed only to the target connections. Keys another
 * replica rotated are reloaded once. The URL is never returned, logged or put in an error.
 */
export async function connectionUrl(
  deps: Pick<DynamicDeps, 'db' | 'secrets' | 'keys' | 'macs' | 'log'>,
  tenantId: string,
  backend: Pick<BackendRow, 'connectionSecret'>,
): Promise<string> {
  const path = connectionSecretPath(backend.connectionSecret);
  const { environment, ...where } = path;
  for (let attempt = 0; attempt < 2; attempt++) {
    const keySet = await deps.keys.get(tenantId);
    try {
      const [r] = await deps.db.withTenant(tenantId, (tx) =>
        deps.secrets.checkRows(tenantId, environment, [where], keySet.sqlKeys, tx),
      );
      if (r && r.plaintext !== null) {
        checkRowMacs(deps.macs, tenantId, path, r, {
          secretId: r.secret_id,
          currentVersion: r.current_version,
          version: r.current_version,
        });
        return unbind(tenantId, r.secret_id, r.current_version, path, r.plaintext);
      }
      // Absent, deleted, expired or destroyed: nothing to reload. Only a key this replica lacks is worth a retry.
      if (!r?.key_missing) break;
    } catch (err) {
      if (pgErrorCode(err) === '39000' || (err instanceof AppError && err.code === 'integrity_error')) {
        deps.log.error(
          { tenant: tenantId, connectionSecret: backend.connectionSecret },
          'a dynamic backend connection secret failed its integrity check',
        );
        throw new TargetMisconfigured('the connection secret failed its integrity check');
      }
      throw err;
    }
    deps.keys.invalidate(tenantId);
  }
  throw new TargetMisconfigured(
    `the connection secret ${backend.connectionSecret} does not exist or has no readable current version`,
  );
}

const jitter = (ms: number) => ms * (0.75 + Math.random() * 0.5);

export type RevocationOutcome = 'revoked' | 'retry' | 'failed' | 'lost';

/**
 * Revocation, the one way a lease ends: by the expiry job, by a request, or for an identity that was disabled.
 * The worker that holds a lease's claim revokes the role in the target (idempotently: see TargetConnections.revoke)
 * and then settles the lease in Coffer only if it still holds the claim, writing the one `leases.revoke` audit event
 * in that same transaction. A crash anywhere leaves the claim to lapse and another worker to start over, finding
 * the role gone if the first got that far: one revocation, one event.
 */
export function leaseRevoker(deps: DynamicDeps) {
  const { db, queries, audit } = deps;

  /** A revocation's event: the caller's (a request), or the service's own (the expiry job). */
  const eventOf = (origin: RequestContext | 'system', e: Parameters<typeof systemEvent>[1]): AuditEvent =>
    origin === 'system' ? systemEvent('system', e) : auditEvent(origin, e);

  async function revokeClaimed(c: ClaimedLease, origin: RequestContext | 'system'): Promise<RevocationOutcome> {
    const lease = await queries.lease(c.tenantId, c.id);
    if (!lease) return 'lost';
    let result: 'dropped' | 'absent' | null = null;
    let error = '';
    try {
      const backend = lease.backendId ? await queries.backendById(c.tenantId, lease.backendId) : undefined;
      if (!backend) throw new TargetMisconfigured('the backend of this lease no longer exists');
      // A row changed outside Coffer names a role, or statements, that no admin chose: nothing is run for it.
      await deps.seals.checkBackend(c.tenantId, backend);
      await deps.seals.checkLease(c.tenantId, lease);
      const statements = parsedStatements(backend.revocationStatements, 'revocation');
      result = await deps.targets.revoke(await connectionUrl(deps, c.tenantId, backend), statements, lease.username);
    } catch (err) {
      error = describeTargetError(err);
      deps.log.warn(
        { lease: c.id, tenant: c.tenantId, attempt: c.attempts, error },
        'lease revocation failed; it will be retried',
      );
    }
    const resource = `dynamic/${lease.backendName}`;
    if (result) {
      const settled = await db.withTenant(c.tenantId, async (tx) => {
        const row = await queries.settleRevoked(c.tenantId, c, tx);
        if (row) {
          await audit.appendInTx(tx, [
            eventOf(origin, {
              tenantId: c.tenantId,
              action: 'leases.revoke',
              outcome: 'allowed',
              resource,
              details: {
                leaseId: c.id,
                username: lease.username,
                reason: row.revokeReason,
                role: result === 'dropped' ? 'dropped' : 'already gone',
                attempts: c.attempts,
              },
            }),
          ]);
        }
        return row;
      });
      return settled ? 'revoked' : 'lost';
    }
    const failed = c.attempts >= MAX_ATTEMPTS;
    const delay = failed ? FAILED_RETRY_MS : Math.min(FAILED_RETRY_MS, BACKOFF_BASE_MS * 2 ** (c.attempts - 1));
    const settled = await db.withTenant(c.tenantId, async (tx) => {
      const row = await queries.settleFailed(
        c.tenantId,
        c,
        { state: failed ? 'revoke_failed' : 'revoking', nextAttemptAt: new Date(Date.now() + jitter(delay)), error },
        tx,
      );
      // Reported once, when the lease first gives up: it stays visible as revoke_failed and is still retried.
      if (row && failed && c.was !== 'revoke_failed') {
        await audit.appendInTx(tx, [
          eventOf(origin, {
            tenantId: c.tenantId,
            action: 'leases.revoke',
            outcome: 'error',
            errorCode: 'unavailable',
            resource,
            details: { leaseId: c.id, username: lease.username, attempts: c.attempts, error },
          }),
        ]);
        await deps.webhooks.enqueueInTx(
          c.tenantId,
          'lease.revoke_failed',
          {
            leaseId: c.id,
            backend: lease.backendName,
            username: lease.username,
            identityId: lease.identityId,
            attempts: c.attempts,
            error,
          },
          tx,
        );
      }
      return row;
    });
    if (!settled) return 'lost';
    return failed ? 'failed' : 'retry';
  }

  /** Runs `work` over `items`, at most `concurrency` at a time. */
  async function each<T, R>(items: readonly T[], concurrency: number, work: (item: T) => Promise<R>): Promise<R[]> {
    const out: R[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: Math.min(concurrency, items.length) }, async () => {
        while (next < items.length) {
          const i = next++;
          out[i] = await work(items[i] as T);
        }
      }),
    );
    return out;
  }

  const settle = (c: ClaimedLease, origin: RequestContext | 'system') =>
    revokeClaimed(c, origin).catch((err) => {
      // Bookkeeping failed (Coffer's own database): the claim lapses and the lease is tried again.
      deps.log.warn({ lease: c.id, err: { message: (err as Error).message } }, 'lease revocation bookkeeping failed');
      return 'lost' as const;
    });

  return {
    revokeClaimed: settle,
    each,

    /**
     * One pass of the expiry job: claims what is due across tenants (SKIP LOCKED, so replicas share the work) and
     * revokes it, batch after batch, for at most `budgetMs`.
     */
    async revokeDue(
      o: { limit?: number; budgetMs?: number; concurrency?: number } = {},
    ): Promise<{ revoked: number; retried: number; failed: number }> {
      // Small batches: a claim lasts only so long, and revocations in one database run one at a time.
      const limit = o.limit ?? 20;
      const deadline = Date.now() + (o.budgetMs ?? 20_000);
      const totals = { revoked: 0, retried: 0, failed: 0 };
      for (;;) {
        const claimed = await queries.claimDue(limit, deps.claimMs);
        const outcomes = await each(claimed, o.concurrency ?? 4, (c) => settle(c, 'system'));
        totals.revoked += outcomes.filter((x) => x === 'revoked').length;
        totals.retried += outcomes.filter((x) => x === 'retry').length;
        totals.failed += outcomes.filter((x) => x === 'failed').length;
        if (claimed.length < limit || Date.now() > deadline) return totals;
      }
    },
  };
}

export type LeaseRevoker = ReturnType<typeof leaseRevoker>;
