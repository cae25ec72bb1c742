import type pg from 'pg';
import { eventDigest, GENESIS_HASH, linkHash } from '../../apps/api/src/audit/audit.digest.ts';
import type { AuditDetails, AuditEvent, AuditOutcome } from '../../apps/api/src/audit/audit.types.ts';

/** One row of coffer.audit_events as node-postgres returns it. */
export interface AuditRow {
  id: string;
  tenant_id: string;
  seq: string;
  occurred_at: Date;
  actor_id: string | null;
  actor_name: string | null;
  action: string;
  resource: string | null;
  version: number | null;
  outcome: AuditOutcome;
  error_code: string | null;
  request_id: string | null;
  source_ip: string | null;
  user_agent: string | null;
  fingerprint: string | null;
  details: AuditDetails | null;
  digest: Buffer;
  prev_hash: Buffer;
  hash: Buffer;
}

/** The stored columns mapped back to the event the writer hashed. */
export function toAuditEvent(r: AuditRow): AuditEvent {
  return {
    tenantId: r.tenant_id,
    occurredAt: r.occurred_at,
    actorId: r.actor_id,
    actorName: r.actor_name,
    action: r.action,
    resource: r.resource,
    version: r.version,
    outcome: r.outcome,
    errorCode: r.error_code,
    requestId: r.request_id,
    sourceIp: r.source_ip,
    userAgent: r.user_agent,
    fingerprint: r.fingerprint,
    details: r.details,
  };
}

/** Audit rows written for one request id (whatever tenant's chain they went to). */
export async function auditRowsFor(db: pg.Pool | pg.Client, requestId: string): Promise<AuditRow[]> {
  const { rows } = await db.query<AuditRow>(
    'select * from coffer.audit_events where request_id = $1 order by tenant_id, seq',
    [requestId],
  );
  return rows;
}

/** Every audit row of one tenant, in chain order. */
export async function auditRowsOf(db: pg.Pool | pg.Client, tenantId: string): Promise<AuditRow[]> {
  const { rows } = await db.query<AuditRow>('select * from coffer.audit_events where tenant_id = $1 order by seq', [
    tenantId,
  ]);
  return rows;
}

/**
 * Recomputes a tenant's chain from genesis (32 zero bytes): contiguous seq from 1, each digest from the columns,
 * each link from the previous hash. Returns the first broken link, or null when the chain holds.
 */
export function firstBrokenLink(
  rows: readonly AuditRow[],
  digestOf = eventDigest,
): { seq: number; reason: string } | null {
  let prev: Buffer = GENESIS_HASH;
  for (const [i, r] of rows.entries()) {
    const seq = Number(r.seq);
    if (seq !== i + 1) return { seq, reason: `row ${r.id}: seq ${seq}, expected ${i + 1}` };
    if (!r.prev_hash.equals(prev)) return { seq, reason: 'prev_hash does not match the previous hash' };
    const digest = digestOf(toAuditEvent(r));
    if (!digest.equals(r.digest)) return { seq, reason: 'digest does not match the columns' };
    const hash = linkHash(prev, seq, digest);
    if (!hash.equals(r.hash)) return { seq, reason: 'hash does not match the link' };
    prev = hash;
  }
  return null;
}
