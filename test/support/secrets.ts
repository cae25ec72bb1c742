import {
  type BundleWriteRequest,
  ErrorEnvelope,
  type ErrorIssue,
  type PutSecretRequest,
  type SecretKind,
} from '@coffer/contracts';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import pg from 'pg';
import { expect, inject } from 'vitest';
import type { z } from 'zod';
import { keyedLink, linkHash, linkKeyPurpose } from '../../apps/api/src/audit/audit.digest.ts';
import type { AuditEvent, AuditOutcome } from '../../apps/api/src/audit/audit.types.ts';
import { keyedDigest, testKeyring } from './audit.ts';
import { bearer } from './factories.ts';

export type Response = LightMyRequestResponse;
type Method = 'GET' | 'PUT' | 'POST' | 'DELETE' | 'PATCH';

/** `kind/owner/name`, as the routes address a secret. */
export const spath = (kind: SecretKind, owner: string, name: string) => `${kind}/${owner}/${name}`;

/**
 * The secrets routes, called as one identity (or as nobody, with `token` null). Paths are passed as written:
 * callers that test odd names encode them themselves.
 */
export function secretsApi(app: FastifyInstance, token: string | null, extraHeaders: Record<string, string> = {}) {
  const send = (method: Method, url: string, payload?: unknown, headers: Record<string, string> = {}) =>
    app.inject({
      method,
      url,
      headers: { ...(token ? bearer(token) : {}), ...extraHeaders, ...headers },
      ...(payload !== undefined ? { payload: payload as Record<string, unknown> } : {}),
    });
  return {
    send,
    put: (path: string, body: PutSecretRequest | Record<string, unknown>) => send('PUT', `/v1/secrets/${path}`, body),
    get: (path: string, version?: number | string) =>
      send('GET', `/v1/secrets/${path}${version !== undefined ? `?version=${version}` : ''}`),
    versions: (path: string) => send('GET', `/v1/secrets/${path}/versions`),
    list: (query: Record<string, string | number | undefined> = {}) => {
      const qs = new URLSearchParams();
      for (const [k, v] of Object.entries(query)) if (v !== undefined) qs.set(k, String(v));
      const s = qs.toString();
      return send('GET', `/v1/secrets${s ? `?${s}` : ''}`);
    },
    remove: (path: string, purge?: boolean) => send('DELETE', `/v1/secrets/${path}${purge ? '?purge=true' : ''}`),
    restore: (path: string) => send('POST', `/v1/secrets/${path}/restore`),
    destroy: (path: string, version: number) => send('POST', `/v1/secrets/${path}/versions/${version}/destroy`),
    bundle: (kind: string, owner: string) => send('GET', `/v1/bundles/${kind}/${owner}`),
    writeBundle: (kind: string, owner: string, body: BundleWriteRequest | Record<string, unknown>) =>
      send('POST', `/v1/bundles/${kind}/${owner}`, body),
  };
}
export type SecretsApi = ReturnType<typeof secretsApi>;

/** The error envelope of a failed response, checked against the contract, after checking the status. */
export function expectError(
  res: Response,
  status: number,
  code: string,
): { code: string; message: string; requestId: string; details?: ErrorIssue[] | undefined } {
  expect({ status: res.statusCode, body: res.body }).toMatchObject({ status });
  const parsed = ErrorEnvelope.parse(res.json());
  expect(parsed.error.code).toBe(code);
  expect(parsed.error.requestId).toBe(res.headers['x-request-id']);
  return parsed.error;
}

/** The body of a successful response, after checking the status, parsed by the contract's schema. */
export function expectOk<S extends z.ZodType>(res: Response, status: number, schema: S): z.output<S> {
  expect({ status: res.statusCode, body: res.body }).toMatchObject({ status });
  return schema.parse(res.json());
}

/** A response with this status and no body (204s). */
export function expectEmpty(res: Response, status = 204): void {
  expect({ status: res.statusCode, body: res.body }).toEqual({ status, body: '' });
}

export function requestIdOf(res: Response): string {
  const id = res.headers['x-request-id'];
  if (typeof id !== 'string') throw new Error('response without x-request-id');
  return id;
}

/** A connection as the schema owner (a superuser in tests): for inspection and deliberate tampering only. */
export async function ownerClient(): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: inject('ownerDatabaseUrl') });
  await client.connect();
  return client;
}

export interface AuditRow {
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
  details: Record<string, string | number | boolean | null> | null;
  digest: Buffer;
  prev_hash: Buffer;
  hash: Buffer;
  link_key_id: string | null;
}

/** Every audit row of one tenant, in chain order. */
export async function auditRowsOf(db: pg.Client, tenantId: string): Promise<AuditRow[]> {
  const { rows } = await db.query<AuditRow>('select * from coffer.audit_events where tenant_id = $1 order by seq', [
    tenantId,
  ]);
  return rows;
}

/** Audit rows written for one request id (whatever tenant's chain they went to). */
export async function auditRowsFor(db: pg.Client, requestId: string): Promise<AuditRow[]> {
  const { rows } = await db.query<AuditRow>(
    'select * from coffer.audit_events where request_id = $1 order by tenant_id, seq',
    [requestId],
  );
  return rows;
}

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

/**
 * Recomputes a tenant's chain from its stored columns, from 32 zero bytes: each digest from the event, each
 * link from the previous hash. Returns the first broken seq, or null when every link holds.
 */
export function firstBrokenLink(rows: readonly AuditRow[]): { seq: number; reason: string } | null {
  let prev: Buffer = Buffer.alloc(32);
  const keyring = testKeyring();
  let expectedSeq = 1;
  for (const r of rows) {
    const seq = Number(r.seq);
    if (seq !== expectedSeq) return { seq, reason: `expected seq ${expectedSeq}` };
    const digest = keyedDigest(toAuditEvent(r));
    if (!digest.equals(r.digest)) return { seq, reason: 'digest does not match the columns' };
    if (!r.prev_hash.equals(prev)) return { seq, reason: 'prev_hash does not match the previous hash' };
    const hash = r.link_key_id
      ? keyedLink(keyring.deriveFor(r.link_key_id, linkKeyPurpose(r.tenant_id)), prev, seq, digest)
      : linkHash(prev, seq, digest);
    if (!hash.equals(r.hash)) return { seq, reason: 'hash does not match' };
    prev = hash;
    expectedSeq++;
  }
  return null;
}

/** A promise of `ms` milliseconds. */
export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The identity id behind a token (tenant admins are created without one in the response). */
export async function identityIdOf(app: FastifyInstance, token: string): Promise<string> {
  const res = await app.inject({ url: '/v1/auth/whoami', headers: bearer(token) });
  if (res.statusCode !== 200) throw new Error(`whoami failed: ${res.statusCode}`);
  return (res.json() as { identityId: string }).identityId;
}
