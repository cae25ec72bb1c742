import { DEFAULT_ENVIRONMENT, type WebhookEvent } from '@coffer/contracts';
import type { AuditSink } from '../audit/audit.sink.ts';
import type { AuditEvent } from '../audit/audit.types.ts';
import type { Tx } from '../db/database.ts';
import type { WebhookQueries } from '../webhooks/webhooks.queries.ts';

/** What a webhook subscriber learns of a change: where and which version, never the value. */
export interface ChangeNotice {
  event: WebhookEvent;
  payload: Record<string, unknown>;
}

export interface Change {
  events: readonly AuditEvent[];
  notices?: readonly ChangeNotice[];
}

export interface ChangeSinks {
  audit: Pick<AuditSink, 'appendInTx'>;
  /** Only paths that notify subscribers need it. */
  webhooks?: Pick<WebhookQueries, 'enqueueManyInTx'>;
}

/**
 * Records a change's audit events and webhook rows inside the change's own transaction, so they commit with it or
 * not at all: no change without its events, no notice of a change that did not happen. Every path that changes a
 * secret (writes, bundles, rotation, purges) records through here. The audit chain is appended at COMMIT (the
 * deferred audit_chain_staged trigger), so neither step holds the tenant's chain head.
 */
export async function recordChange(sinks: ChangeSinks, tx: Tx, tenantId: string, change: Change): Promise<void> {
  if (change.events.length > 0) await sinks.audit.appendInTx(tx, change.events);
  const notices = change.notices ?? [];
  if (notices.length === 0) return;
  if (!sinks.webhooks) throw new Error('a change with webhook notices needs the webhook queries');
  await sinks.webhooks.enqueueManyInTx(tenantId, notices, tx);
}

const at = () => new Date().toISOString();

/** Where a notice points: `kind/owner/name`, and its environment when that is not `default` (as before environments). */
export interface NoticePath {
  environment: string;
  kind: string;
  owner: string;
  name: string;
}

function where(p: NoticePath): { path: string; environment?: string } {
  const path = `${p.kind}/${p.owner}/${p.name}`;
  return p.environment === DEFAULT_ENVIRONMENT ? { path } : { path, environment: p.environment };
}

export const notices = {
  written: (tenantId: string, p: NoticePath, version: number, created: boolean, extra = {}): ChangeNotice => ({
    event: 'secret.written',
    payload: { tenantId, ...where(p), version, created, ...extra, at: at() },
  }),
  deleted: (tenantId: string, p: NoticePath, version: number, purged: boolean): ChangeNotice => ({
    event: 'secret.deleted',
    payload: { tenantId, ...where(p), version, purged, at: at() },
  }),
  rotated: (
    tenantId: string,
    p: NoticePath,
    fromVersion: number,
    toVersion: number,
    trigger: string,
    rotatedAt: Date,
  ): ChangeNotice => ({
    event: 'secret.rotated',
    payload: { tenantId, ...where(p), fromVersion, toVersion, trigger, rotatedAt: rotatedAt.toISOString() },
  }),
  /** A version cut off (410 from now on): by `…/versions/:n/revoke`, or by its deployment's revocation. */
  versionRevoked: (
    tenantId: string,
    p: NoticePath,
    version: number,
    revokedAt: Date,
    extra: { forced: boolean; deployment?: string },
  ): ChangeNotice => ({
    event: 'secret.version_revoked',
    payload: { tenantId, ...where(p), version, ...extra, revokedAt: revokedAt.toISOString() },
  }),
  rotationFailed: (tenantId: string, p: NoticePath, reason: string): ChangeNotice => ({
    event: 'secret.rotation_failed',
    payload: { tenantId, ...where(p), reason },
  }),
};
