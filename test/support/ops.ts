import { randomBytes } from 'node:crypto';
import type { CreateWebhookRequest, RotateSecretRequest } from '@coffer/contracts';
import type { FastifyInstance } from 'fastify';
import type pg from 'pg';
import { inject } from 'vitest';
import { headMac, toAppendRow } from '../../apps/api/src/audit/audit.digest.ts';
import type { AuditEvent } from '../../apps/api/src/audit/audit.types.ts';
import { testLinkKey } from './audit.ts';
import { sender } from './secrets.ts';

/**
 * Helpers for the rotation, key, webhook and audit suites: a client for their routes, owner-side setup (making
 * secrets due, appending backdated events so the chain stays valid, tampering), master keyrings and a CSV parser.
 */

type Query = Record<string, string | number | undefined>;

function qs(query: Query): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined) p.set(k, String(v));
  const s = p.toString();
  return s ? `?${s}` : '';
}

/** The routes beyond secrets CRUD, called as one identity (or as nobody, with `token` null). */
export function opsApi(app: FastifyInstance, token: string | null, extraHeaders: Record<string, string> = {}) {
  const send = sender(app, token, extraHeaders);
  return {
    send,
    rotate: (path: string, body?: RotateSecretRequest | Record<string, unknown>) =>
      send('POST', `/v1/secrets/${path}/rotate`, body),
    patch: (path: string, body: Record<string, unknown>) => send('PATCH', `/v1/secrets/${path}`, body),
    due: (query: Query = {}) => send('GET', `/v1/rotation/due${qs(query)}`),
    log: (query: Query = {}) => send('GET', `/v1/rotation/log${qs(query)}`),
    keys: () => send('GET', '/v1/keys'),
    rotateKey: () => send('POST', '/v1/keys/rotate'),
    systemKeys: () => send('GET', '/v1/system/keys'),
    rewrap: () => send('POST', '/v1/system/master-key/rewrap'),
    createWebhook: (body: CreateWebhookRequest | Record<string, unknown>) => send('POST', '/v1/webhooks', body),
    webhooks: () => send('GET', '/v1/webhooks'),
    deleteWebhook: (id: string) => send('DELETE', `/v1/webhooks/${id}`),
    deliveries: (id: string) => send('GET', `/v1/webhooks/${id}/deliveries`),
    audit: (query: Query = {}) => send('GET', `/v1/audit${qs(query)}`),
    exportAudit: (query: Query = {}) => send('GET', `/v1/audit/export${qs(query)}`),
    verify: (query: Query = {}) => send('GET', `/v1/audit/verify${qs(query)}`),
    summary: (query: Query = {}) => send('GET', `/v1/audit/summary${qs(query)}`),
  };
}
export type OpsApi = ReturnType<typeof opsApi>;

/** The id of a secret of a tenant, by its path `kind/owner/name`. */
export async function secretIdOf(db: pg.Client, tenantId: string, path: string): Promise<string> {
  const [kind, owner, name] = path.split('/');
  const { rows } = await db.query<{ id: string }>(
    'select id from coffer.secrets where tenant_id = $1 and kind = $2 and owner = $3 and name = $4',
    [tenantId, kind, owner, name],
  );
  const id = rows[0]?.id;
  if (!id) throw new Error(`no secret ${path} in tenant ${tenantId}`);
  return id;
}

/** Makes secrets of one tenant due now (both the schedule the scheduler claims from and the date users see). */
export async function makeDue(db: pg.Client, tenantId: string, secretIds: readonly string[], ago = '1 minute') {
  await db.query(
    `update coffer.rotation_schedule set due_at = now() - $3::interval where tenant_id = $1 and secret_id = any($2::uuid[])`,
    [tenantId, secretIds, ago],
  );
  await db.query(
    `update coffer.secrets set next_rotation_at = now() - $3::interval where tenant_id = $1 and id = any($2::uuid[])`,
    [tenantId, secretIds, ago],
  );
}

/** An audit event for owner-side appends, with every column named (tests override what they care about). */
export function ownerEvent(tenantId: string, e: Partial<AuditEvent> & Pick<AuditEvent, 'action'>): AuditEvent {
  return {
    tenantId,
    occurredAt: new Date(),
    actorId: null,
    actorName: 'owner-seed',
    resource: null,
    version: null,
    outcome: 'allowed',
    errorCode: null,
    requestId: null,
    sourceIp: null,
    userAgent: null,
    fingerprint: null,
    details: null,
    ...e,
  };
}

/**
 * Appends events to a tenant's chain exactly as the service does (through coffer.audit_append, with the tenant's
 * link key), so the chain stays valid whatever the events say, including a backdated occurred_at.
 */
export async function appendEvents(db: pg.Client, tenantId: string, events: readonly AuditEvent[], chunk = 1_000) {
  for (let i = 0; i < events.length; i += chunk) {
    const rows = events.slice(i, i + chunk).map(toAppendRow);
    const k = testLinkKey(tenantId);
    await db.query('select coffer.audit_append($1::uuid, $2::jsonb, $3, $4)', [
      tenantId,
      JSON.stringify(rows),
      k.id,
      k.key,
    ]);
  }
}

/**
 * Runs `fn` on the owner connection with triggers off for this session only (session_replication_role), so a
 * test can edit, delete or insert audit rows as an attacker with database access would. Other sessions keep the
 * append-only trigger.
 */
export async function asTamperer<T>(db: pg.Client, fn: () => Promise<T>): Promise<T> {
  await db.query('set session_replication_role = replica');
  try {
    return await fn();
  } finally {
    await db.query('set session_replication_role = default');
  }
}

/**
 * Starts a tenant's chain over from the genesis (owner only, for setting up a history that begins in the past):
 * its events are removed and its head reset, so events appended next get seq 1, 2, ….
 */
export async function resetChain(db: pg.Client, tenantId: string): Promise<void> {
  await asTamperer(db, async () => {
    await db.query('delete from coffer.audit_events where tenant_id = $1', [tenantId]);
    await db.query('delete from coffer.audit_checkpoints where tenant_id = $1', [tenantId]);
    await db.query(
      `update coffer.audit_heads set seq = 0, hash = '\\x${'00'.repeat(32)}'::bytea, key_id = null, mac = null,
         signed_at = null, keyed_from = 1 where tenant_id = $1`,
      [tenantId],
    );
  });
}

/**
 * Signs a tenant's head as it now stands with the tenant's link key, as only a holder of the master key could: for
 * tests that move the head consistently with rows they rewrote, to show what verify finds even then.
 */
export async function signHead(db: pg.Client, tenantId: string): Promise<void> {
  const { rows } = await db.query<{ seq: string; hash: Buffer; keyed_from: string }>(
    'select seq, hash, keyed_from from coffer.audit_heads where tenant_id = $1',
    [tenantId],
  );
  const h = rows[0];
  if (!h) throw new Error(`no head for ${tenantId}`);
  const k = testLinkKey(tenantId);
  const signedAt = new Date();
  const mac = headMac(k.key, {
    tenantId,
    seq: Number(h.seq),
    hash: h.hash,
    keyedFrom: Number(h.keyed_from),
    signedAt,
  });
  await db.query('update coffer.audit_heads set key_id = $2, signed_at = $3, mac = $4 where tenant_id = $1', [
    tenantId,
    k.id,
    signedAt,
    mac,
  ]);
}

/** A fresh master key entry `id:base64`, with a unique id. */
export function newMasterKey(prefix: string): { id: string; entry: string } {
  const id = `${prefix}-${randomBytes(4).toString('hex')}`;
  return { id, entry: `${id}:${randomBytes(32).toString('base64')}` };
}

/** The id of the test run's master key (the one every other test app wraps with). */
export function baseMasterKeyId(): string {
  const id = inject('masterKeys').split(':')[0];
  if (!id) throw new Error('no master key id');
  return id;
}

/** RFC 4180 CSV: quoted fields may hold commas, doubled quotes and line breaks. */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i] as string;
    if (quoted) {
      if (ch === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else quoted = false;
      } else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      row.push(field);
      field = '';
    } else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
    } else field += ch;
  }
  if (field !== '' || row.length > 0) {
    row.push(field);
    rows.push(row);
  }
  return rows;
}

/** Waits until `check` holds, polling; fails after `timeoutMs`. */
export async function eventually(check: () => Promise<boolean>, timeoutMs = 5_000, label = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${label}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * Runs `fn` while every `event` on `table` for one tenant's rows fails inside the database (a crash in the middle
 * of a transaction, seen from the application: the statement errors and the transaction rolls back).
 * `event` is a trigger event such as `insert` or `update of served_until`.
 */
export async function withFailingTrigger<T>(
  db: pg.Client,
  table: string,
  event: string,
  tenantId: string,
  fn: () => Promise<T>,
): Promise<T> {
  const name = `coffer_test_fail_${randomBytes(6).toString('hex')}`;
  await db.query(
    `create function public.${name}() returns trigger language plpgsql as $$
     begin raise exception 'injected failure (test)'; end $$`,
  );
  try {
    await db.query(
      `create trigger ${name} before ${event} on ${table} for each row
       when (new.tenant_id = '${tenantId}'::uuid) execute function public.${name}()`,
    );
    return await fn();
  } finally {
    await db.query(`drop trigger if exists ${name} on ${table}`);
    await db.query(`drop function if exists public.${name}()`);
  }
}
