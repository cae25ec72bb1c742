import { createHmac, randomBytes } from 'node:crypto';
import type { CreateWebhookRequest, CreateWebhookResponse, Webhook, WebhookEvent } from '@coffer/contracts';
import type { Logger } from 'pino';
import { auditEvent } from '../audit/audit.events.ts';
import type { AuditSink } from '../audit/audit.sink.ts';
import { principalOf } from '../auth/principal.ts';
import { newId } from '../crypto/ids.ts';
import type { MasterKeyring } from '../crypto/keyring.ts';
import type { Database } from '../db/database.ts';
import { AppError, notFound } from '../errors/app-error.ts';
import type { RequestContext } from '../http/request-context.ts';
import {
  checkedLookup,
  checkWebhookUrl,
  RefusedTarget,
  type Resolve,
  systemResolve,
  type UrlPolicy,
} from './url-policy.ts';
import type { ClaimedDelivery, WebhookQueries, WebhookRow } from './webhooks.queries.ts';
import { postWebhook } from './webhooks.transport.ts';

export const webhookSecretContext = (webhookId: string) => `coffer/webhook-secret/v1/${webhookId}`;

/** `coffer-signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` (Stripe's scheme, so receivers know it). */
export function signDelivery(secret: string, timestamp: number, body: string): string {
  return `t=${timestamp},v1=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

function toWebhook(r: WebhookRow): Webhook {
  return {
    id: r.id,
    url: r.url,
    events: r.events as WebhookEvent[],
    disabled: r.disabled,
    createdAt: r.createdAt.toISOString(),
  };
}

export interface WebhookServiceDeps {
  db: Pick<Database, 'withTenant'>;
  queries: WebhookQueries;
  keyring: Pick<MasterKeyring, 'wrap' | 'unwrap'>;
  audit: AuditSink;
  urlPolicy: UrlPolicy;
  log: Logger;
  resolve?: Resolve;
  maxAttempts?: number;
}

export function webhookService(deps: WebhookServiceDeps) {
  const { queries, keyring, audit } = deps;
  const maxAttempts = deps.maxAttempts ?? 8;
  const resolve = deps.resolve ?? systemResolve;
  const connectLookup = checkedLookup(deps.urlPolicy, resolve);

  async function deliver(d: ClaimedDelivery): Promise<'delivered' | 'retry' | 'failed'> {
    const secret = keyring
      .unwrap({ wrapped: d.secretWrapped, masterKeyId: d.secretMasterKeyId }, webhookSecretContext(d.webhookId))
      .toString('utf8');
    const body = JSON.stringify({ id: d.id, type: d.event, ...d.payload });
    const timestamp = Math.floor(Date.now() / 1000);
    let statusCode: number | null = null;
    let error: string | null = null;
    const problem = await checkWebhookUrl(d.url, deps.urlPolicy, resolve);
    if (problem) error = `refused: the URL ${problem}`;
    else {
      try {
        const res = await postWebhook(new URL(d.url), {
          lookup: connectLookup,
          timeoutMs: 10_000,
          headers: {
            'content-type': 'application/json',
            'user-agent': 'coffer-webhooks/1',
            'coffer-event': d.event,
            'coffer-delivery': d.id,
            'coffer-signature': signDelivery(secret, timestamp, body),
          },
          body,
        });
        statusCode = res.status;
        if (res.status >= 200 && res.status < 300) {
          await queries.settle(d.tenantId, d.id, { status: 'delivered', statusCode, error: null });
          return 'delivered';
        }
        error = `HTTP ${res.status}`;
      } catch (err) {
        if (err instanceof RefusedTarget) error = `refused: the URL ${err.problem}`;
        else error = err instanceof Error ? err.message.slice(0, 200) : 'delivery failed';
      }
    }
    if (d.attempts >= maxAttempts) {
      await queries.settle(d.tenantId, d.id, { status: 'failed', statusCode, error });
      return 'failed';
    }
    // Exponential backoff with jitter: ~10 s, 20 s, 40 s … capped at an hour.
    const delay = Math.min(3_600_000, 10_000 * 2 ** (d.attempts - 1)) * (0.75 + Math.random() * 0.5);
    await queries.settle(d.tenantId, d.id, {
      status: 'pending',
      nextAttemptAt: new Date(Date.now() + delay),
      statusCode,
      error,
    });
    return 'retry';
  }

  return {
    async create(ctx: RequestContext, body: CreateWebhookRequest): Promise<CreateWebhookResponse> {
      const p = principalOf(ctx);
      const problem = await checkWebhookUrl(body.url, deps.urlPolicy, resolve);
      if (problem)
        throw new AppError('validation_failed', `the webhook URL ${problem}`, [{ path: 'body.url', message: problem }]);
      const id = newId();
      const signingSecret = `coffer_whs_${randomBytes(32).toString('base64url')}`;
      const wrapped = keyring.wrap(Buffer.from(signingSecret, 'utf8'), webhookSecretContext(id));
      const row = await deps.db.withTenant(p.tenantId, async (tx) => {
        const created = await queries.insert(
          p.tenantId,
          {
            id,
            url: body.url,
            events: body.events,
            secretWrapped: wrapped.wrapped,
            secretMasterKeyId: wrapped.masterKeyId,
            createdBy: p.identityId,
          },
          tx,
        );
        await audit.appendInTx(tx, [
          auditEvent(ctx, {
            action: 'webhooks.create',
            outcome: 'allowed',
            resource: `webhooks/${id}`,
            details: { events: body.events.join(',') },
          }),
        ]);
        return created;
      });
      return { webhook: toWebhook(row), signingSecret };
    },

    async list(ctx: RequestContext) {
      const p = principalOf(ctx);
      const rows = await queries.list(p.tenantId);
      await audit.record(auditEvent(ctx, { action: 'webhooks.list', outcome: 'allowed', resource: 'webhooks' }));
      return { items: rows.map(toWebhook) };
    },

    async remove(ctx: RequestContext, id: string): Promise<void> {
      const p = principalOf(ctx);
      await deps.db.withTenant(p.tenantId, async (tx) => {
        if (!(await queries.remove(p.tenantId, id, tx))) throw notFound('webhook');
        await audit.appendInTx(tx, [
          auditEvent(ctx, { action: 'webhooks.delete', outcome: 'allowed', resource: `webhooks/${id}` }),
        ]);
      });
    },

    async deliveries(ctx: RequestContext, id: string) {
      const p = principalOf(ctx);
      const hooks = await queries.list(p.tenantId);
      if (!hooks.some((h) => h.id === id)) throw notFound('webhook');
      const rows = await queries.deliveries(p.tenantId, id, 100);
      await audit.record(
        auditEvent(ctx, { action: 'webhooks.deliveries', outcome: 'allowed', resource: `webhooks/${id}` }),
      );
      return {
        items: rows.map((r) => ({
          id: r.id,
          event: r.event as WebhookEvent,
          status: r.status,
          attempts: r.attempts,
          lastStatusCode: r.lastStatusCode,
          lastError: r.lastError,
          createdAt: r.createdAt.toISOString(),
          deliveredAt: r.deliveredAt?.toISOString() ?? null,
        })),
      };
    },

    deliver,

    /** One pass of the delivery worker: claim what is due, deliver it, record the outcome. */
    async deliverDue(limit = 50): Promise<{ delivered: number; retried: number; failed: number }> {
      const claimed = await queries.claimDue(limit, 60_000);
      const outcomes = await Promise.all(
        claimed.map((d) =>
          deliver(d).catch((err) => {
            deps.log.warn(
              { err: { message: (err as Error).message }, delivery: d.id },
              'webhook delivery bookkeeping failed',
            );
            return 'retry' as const;
          }),
        ),
      );
      return {
        delivered: outcomes.filter((o) => o === 'delivered').length,
        retried: outcomes.filter((o) => o === 'retry').length,
        failed: outcomes.filter((o) => o === 'failed').length,
      };
    },
  };
}

export type WebhookService = ReturnType<typeof webhookService>;
