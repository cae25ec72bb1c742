import { createHash } from 'node:crypto';
import type pg from 'pg';
import { inject } from 'vitest';
import { keyedLink, linkHash, linkKeyPurpose } from '../../apps/api/src/audit/audit.digest.ts';
import type { AuditDetails, AuditEvent, AuditOutcome } from '../../apps/api/src/audit/audit.types.ts';
import { parseKeyring } from '../../apps/api/src/config.ts';
import { MasterKeyring } from '../../apps/api/src/crypto/keyring.ts';

const GENESIS_HASH = Buffer.alloc(32);

/** The test keyring (what the test app runs with), to check keyed links as verify does. */
export function testKeyring(raw = inject('masterKeys')): MasterKeyring {
  const problems: string[] = [];
  const keys = parseKeyring(raw, 'COFFER_MASTER_KEYS', problems);
  if (!keys) throw new Error(problems.join('\n'));
  return new MasterKeyring(keys);
}

/** A tenant's link key, as the API hands it to coffer.audit_append. */
export function testLinkKey(tenantId: string, keyring = testKeyring()): { id: string; key: Buffer } {
  return { id: keyring.activeId, key: keyring.deriveFor(keyring.activeId, linkKeyPurpose(tenantId)) };
}

/** A JSON value as PostgreSQL prints jsonb: `, ` and `: ` separators, object keys shortest first, then bytewise. */
function pgJson(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'string') {
    let out = '"';
    for (const ch of v) {
      const c = ch.codePointAt(0) ?? 0;
      if (ch === '"') out += '\\"';
      else if (ch === '\\') out += '\\\\';
      else if (ch === '\b') out += '\\b';
      else if (ch === '\f') out += '\\f';
      else if (ch === '\n') out += '\\n';
      else if (ch === '\r') out += '\\r';
      else if (ch === '\t') out += '\\t';
      else if (c < 0x20) out += `\\u${c.toString(16).padStart(4, '0')}`;
      else out += ch;
    }
    return `${out}"`;
  }
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return `[${v.map(pgJson).join(', ')}]`;
  const entries = Object.entries(v as Record<string, unknown>).sort(([a], [b]) => {
    const ba = Buffer.from(a);
    const bb = Buffer.from(b);
    return ba.length - bb.length || Buffer.compare(ba, bb);
  });
  return `{${entries.map(([k, x]) => `${pgJson(k)}: ${pgJson(x)}`).join(', ')}}`;
}

/** The canonical text coffer.audit_append hashes (format 2), rendered here from an event's fields. */
export function canonicalText(e: AuditEvent): string {
  return pgJson([
    2,
    e.tenantId,
    e.occurredAt.toISOString().replace('Z', '000Z'),
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
    e.details,
  ]);
}

/** The digest the database computes for an event (format 2). */
export function keyedDigest(e: AuditEvent): Buffer {
  return createHash('sha256').update(canonicalText(e), 'utf8').digest();
}

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
  link_key_id: string | null;
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
 * each link from the previous hash under the tenant's link key. Returns the first broken link, or null when the
 * chain holds.
 */
export function firstBrokenLink(
  rows: readonly AuditRow[],
  digestOf = keyedDigest,
): { seq: number; reason: string } | null {
  let prev: Buffer = GENESIS_HASH;
  const keyring = testKeyring();
  for (const [i, r] of rows.entries()) {
    const seq = Number(r.seq);
    if (seq !== i + 1) return { seq, reason: `row ${r.id}: seq ${seq}, expected ${i + 1}` };
    if (!r.prev_hash.equals(prev)) return { seq, reason: 'prev_hash does not match the previous hash' };
    const digest = digestOf(toAuditEvent(r));
    if (!digest.equals(r.digest)) return { seq, reason: 'digest does not match the columns' };
    const hash = r.link_key_id
      ? keyedLink(keyring.deriveFor(r.link_key_id, linkKeyPurpose(r.tenant_id)), prev, seq, digest)
      : linkHash(prev, seq, digest);
    if (!hash.equals(r.hash)) return { seq, reason: 'hash does not match the link' };
    prev = hash;
  }
  return null;
}
