import { createHash, createHmac } from 'node:crypto';
import type { AuditDetails, AuditEvent } from './audit.types.ts';

/** Format of events chained before links were keyed: digest computed by the API, link a plain SHA-256. */
export const CHAIN_FORMAT = 1;
export const GENESIS_HASH = Buffer.alloc(32);

/** HKDF purpose of a tenant's link key (see MasterKeyring.deriveFor): links and heads are keyed per tenant. */
export const linkKeyPurpose = (tenantId: string) => `coffer/audit-link/v1/${tenantId}`;

/** The key the API hands coffer.audit_append for one tenant, with the id of the master key it comes from. */
export interface LinkKey {
  id: string;
  key: Buffer;
}
export type LinkKeys = (tenantId: string) => LinkKey;

/**
 * Link keys from the active master key; verify derives from the key id each event names. The keyring does not change
 * while it lives, so each tenant's key is derived once (HKDF on every group commit showed in a read's profile) and
 * kept while the tenant is among the last `keep` that appended; past that the memo starts over.
 */
export function linkKeys(
  keyring: { activeId: string; deriveFor(id: string, purpose: string): Buffer },
  keep = 10_000,
): LinkKeys {
  let memo = new Map<string, LinkKey>();
  return (tenantId) => {
    let k = memo.get(tenantId);
    if (!k) {
      if (memo.size >= keep) memo = new Map();
      k = { id: keyring.activeId, key: keyring.deriveFor(keyring.activeId, linkKeyPurpose(tenantId)) };
      memo.set(tenantId, k);
    }
    return k;
  };
}

/** A keyed link, as coffer.audit_append computes it: HMAC-SHA256(key, prev_hash || int8(seq) || digest). */
export function keyedLink(key: Buffer, prevHash: Buffer, seq: number, digest: Buffer): Buffer {
  const seqBytes = Buffer.alloc(8);
  seqBytes.writeBigInt64BE(BigInt(seq));
  return createHmac('sha256', key).update(prevHash).update(seqBytes).update(digest).digest();
}

/** What a head's signature covers, exactly as coffer.audit_append writes it. */
export function headMac(
  key: Buffer,
  h: { tenantId: string; seq: number; hash: Buffer; keyedFrom: number; signedAt: Date },
): Buffer {
  return createHmac('sha256', key)
    .update(
      ['coffer/audit-head/v1', h.tenantId, h.seq, h.hash.toString('hex'), h.keyedFrom, h.signedAt.getTime()].join(':'),
    )
    .digest();
}

/** Digest of a keyed (format 2) event: sha256 of the canonical text PostgreSQL renders from the stored columns. */
export function canonicalDigest(canonical: string): Buffer {
  return createHash('sha256').update(canonical, 'utf8').digest();
}

/**
 * The canonical form of a format-1 event: a JSON array in fixed field order (details with sorted keys), so the
 * digest can be recomputed from the stored columns by anyone verifying the chain.
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

/** A format-1 link: hash = sha256(prev_hash || int8(seq) || digest). */
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

const cleanDetails = (d: AuditEvent['details']): AuditEvent['details'] =>
  d ? Object.fromEntries(Object.entries(d).map(([k, v]) => [clean(k), typeof v === 'string' ? clean(v) : v])) : null;

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
    details: cleanDetails(e.details),
  };
}

/**
 * The JSON the append function takes: the columns of cleanEvent(e) (the database computes the digest). Built from
 * the event itself, not from a cleaned copy: events come in many shapes, and copying one by spread was among the
 * costliest lines of a read.
 */
export function toAppendRow(e: AuditEvent): Record<string, unknown> {
  return {
    occurred_at: e.occurredAt.toISOString(),
    actor_id: e.actorId,
    actor_name: clean(e.actorName),
    action: clean(e.action),
    resource: clean(e.resource),
    version: e.version,
    outcome: e.outcome,
    error_code: clean(e.errorCode),
    request_id: clean(e.requestId),
    source_ip: clean(e.sourceIp),
    user_agent: clean(e.userAgent),
    fingerprint: clean(e.fingerprint),
    details: cleanDetails(e.details),
  };
}
