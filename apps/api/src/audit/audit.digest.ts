import { createHash } from 'node:crypto';
import type { AuditDetails, AuditEvent } from './audit.types.ts';

export const CHAIN_FORMAT = 1;
export const GENESIS_HASH = Buffer.alloc(32);

/**
 * The canonical form of an event: a JSON array in fixed field order (details with sorted keys), so the digest
 * can be recomputed from the stored columns by anyone verifying the chain.
 */
export function canonicalEvent(e: AuditEvent): string {
  return JSON.stringify([
    CHAIN_FORMAT,
    e.tenantId,
    e.occurredAt.toISOString(),
    e.actorId,
    e.actorName,
    e.action,
    e.resource,
    e.version,
    e.outcome,
    e.errorCode,
    e.requestId,
    e.sourceIp,
    e.userAgent,
    e.fingerprint,
    e.details === null ? null : sortedDetails(e.details),
  ]);
}

/** Details are flat (string, number, boolean, null values), so sorting the keys is the whole canonical form. */
function sortedDetails(d: AuditDetails): [string, AuditDetails[string]][] {
  return Object.entries(d).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

export function eventDigest(e: AuditEvent): Buffer {
  return createHash('sha256').update(canonicalEvent(e)).digest();
}

/** The link: hash = sha256(prev_hash || int8(seq) || digest), as coffer.audit_append computes it. */
export function linkHash(prevHash: Buffer, seq: number, digest: Buffer): Buffer {
  const seqBytes = Buffer.alloc(8);
  seqBytes.writeBigInt64BE(BigInt(seq));
  return createHash('sha256').update(prevHash).update(seqBytes).update(digest).digest();
}

/**
 * PostgreSQL text cannot hold NUL, and control characters have no business in a log an auditor reads:
 * request-supplied text (paths, user agents, client ids) is cleaned before it is hashed and stored, so a hostile
 * request cannot make its own audit event, or a whole group commit, fail.
 */
function clean<T extends string | null>(s: T): T {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
  return (s === null ? null : s.replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/g, '\ufffd')) as T;
}

export function cleanEvent(e: AuditEvent): AuditEvent {
  return {
    ...e,
    actorName: clean(e.actorName),
    action: clean(e.action),
    resource: clean(e.resource),
    errorCode: clean(e.errorCode),
    requestId: clean(e.requestId),
    sourceIp: clean(e.sourceIp),
    userAgent: clean(e.userAgent),
    fingerprint: clean(e.fingerprint),
    details: e.details
      ? Object.fromEntries(Object.entries(e.details).map(([k, v]) => [clean(k), typeof v === 'string' ? clean(v) : v]))
      : null,
  };
}

/** The JSON the append function takes: columns plus the digest in hex (of the cleaned event, as stored). */
export function toAppendRow(raw: AuditEvent): Record<string, unknown> {
  const e = cleanEvent(raw);
  return {
    occurred_at: e.occurredAt.toISOString(),
    actor_id: e.actorId,
    actor_name: e.actorName,
    action: e.action,
    resource: e.resource,
    version: e.version,
    outcome: e.outcome,
    error_code: e.errorCode,
    request_id: e.requestId,
    source_ip: e.sourceIp,
    user_agent: e.userAgent,
    fingerprint: e.fingerprint,
    details: e.details,
    digest: eventDigest(e).toString('hex'),
  };
}
