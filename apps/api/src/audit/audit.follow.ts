import { setTimeout as sleep } from 'node:timers/promises';
import { DEFAULT_ENVIRONMENT } from '@coffer/contracts';
import type { Principal } from '../auth/principal.ts';
import { principalOf } from '../auth/principal.ts';
import type { RequestContext } from '../http/request-context.ts';
import { auditEvent } from './audit.events.ts';
import type { AuditFilter, AuditQueries } from './audit.queries.ts';
import { toView } from './audit.service.ts';
import type { AuditSink } from './audit.sink.ts';

export interface AuditFollowDeps {
  queries: Pick<AuditQueries, 'batch' | 'head'>;
  audit: Pick<AuditSink, 'record'>;
  /** Reloads the caller's identity; throws when its token is no longer valid (disabled, re-keyed, deleted). */
  refreshPrincipal: (p: Principal) => Promise<Principal>;
  pollMs?: number;
  recheckMs?: number;
  keepAliveMs?: number;
}

export interface FollowRequest extends AuditFilter {
  env?: string | undefined;
  after?: number | undefined;
  maxSeconds: number;
  lastEventId?: string | undefined;
}

const BATCH = 500;

/** A `Last-Event-ID` is the seq of the last event the client saw; anything else is ignored, not an error. */
function seqOf(lastEventId: string | undefined): number | undefined {
  if (lastEventId === undefined || !/^\d{1,15}$/.test(lastEventId)) return undefined;
  return Number(lastEventId);
}

/**
 * The follow stream of one tenant's log: server-sent events, polled from the database by the server (on every
 * replica the same), so a follower costs one audit event per session instead of one per poll. Only committed
 * events are sent: the scan stops at the chain head, which moves at commit. The session ends at `maxSeconds`, when
 * the token expires, when the identity loses its access (re-checked every few seconds) or when `signal` aborts.
 */
export function auditFollower(deps: AuditFollowDeps) {
  const pollMs = deps.pollMs ?? 250;
  const recheckMs = deps.recheckMs ?? 5_000;
  const keepAliveMs = deps.keepAliveMs ?? 15_000;

  return async function follow(
    ctx: RequestContext,
    q: FollowRequest,
    signal: AbortSignal,
  ): Promise<AsyncGenerator<string, void, undefined>> {
    let principal = principalOf(ctx);
    const tenantId = principal.tenantId;
    const resumeAt = seqOf(q.lastEventId) ?? q.after;
    const start = resumeAt ?? (await deps.queries.head(tenantId))?.seq ?? 0;
    await deps.audit.record(
      auditEvent(ctx, {
        action: 'audit.follow',
        outcome: 'allowed',
        resource: 'audit',
        details: { after: start, maxSeconds: q.maxSeconds },
      }),
    );
    const filter: AuditFilter = {
      actor: q.actor,
      action: q.action,
      path: q.path,
      outcome: q.outcome,
      environment: q.env ?? DEFAULT_ENVIRONMENT,
    };
    const endsAt = Math.min(Date.now() + q.maxSeconds * 1000, principal.tokenExpiresAt.getTime());

    async function* frames(): AsyncGenerator<string, void, undefined> {
      let after = start;
      let lastSent = Date.now();
      let lastCheck = Date.now();
      // Tells EventSource clients how soon to reconnect once the session ends.
      yield 'retry: 1000\n\n';
      while (!signal.aborted && Date.now() < endsAt) {
        if (Date.now() - lastCheck >= recheckMs) {
          try {
            principal = await deps.refreshPrincipal(principal);
          } catch {
            yield 'event: end\ndata: {"reason":"unauthorized"}\n\n';
            return;
          }
          lastCheck = Date.now();
        }
        const head = (await deps.queries.head(tenantId))?.seq ?? 0;
        while (head > after) {
          const rows = await deps.queries.batch(tenantId, filter, after, BATCH, head);
          for (const r of rows) yield `id: ${r.seq}\nevent: audit\ndata: ${JSON.stringify(toView(r))}\n\n`;
          if (rows.length > 0) lastSent = Date.now();
          // Fewer than a batch: nothing else up to the head matches the filter.
          after = rows.length < BATCH ? head : (rows.at(-1)?.seq ?? head);
        }
        if (Date.now() - lastSent >= keepAliveMs) {
          yield ': keep-alive\n\n';
          lastSent = Date.now();
        }
        await sleep(Math.max(0, Math.min(pollMs, endsAt - Date.now())), undefined, { signal }).catch(() => undefined);
      }
      // The end carries the position reached, so a reconnect skips what the filter passed over.
      if (!signal.aborted) yield `id: ${after}\nevent: end\ndata: {"reason":"session_ended"}\n\n`;
    }
    return frames();
  };
}

export type AuditFollow = ReturnType<typeof auditFollower>;
