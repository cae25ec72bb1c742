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
import { bearer } from './factories.ts';

export type Response = LightMyRequestResponse;
type Method = 'GET' | 'PUT' | 'POST' | 'DELETE' | 'PATCH';

/** `kind/owner/name`, as the routes address a secret. */
export const spath = (kind: SecretKind, owner: string, name: string) => `${kind}/${owner}/${name}`;

/** `app.inject` as one identity (or as nobody, with `token` null), with headers every request of it carries. */
export function sender(app: FastifyInstance, token: string | null, extraHeaders: Record<string, string> = {}) {
  return (method: Method, url: string, payload?: unknown, headers: Record<string, string> = {}) =>
    app.inject({
      method,
      url,
      headers: { ...(token ? bearer(token) : {}), ...extraHeaders, ...headers },
      ...(payload !== undefined ? { payload: payload as Record<string, unknown> } : {}),
    });
}

/**
 * The secrets routes, called as one identity (or as nobody, with `token` null). Paths are passed as written:
 * callers that test odd names encode them themselves.
 */
export function secretsApi(app: FastifyInstance, token: string | null, extraHeaders: Record<string, string> = {}) {
  const send = sender(app, token, extraHeaders);
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

/** A promise of `ms` milliseconds. */
export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The identity id behind a token (tenant admins are created without one in the response). */
export async function identityIdOf(app: FastifyInstance, token: string): Promise<string> {
  const res = await app.inject({ url: '/v1/auth/whoami', headers: bearer(token) });
  if (res.statusCode !== 200) throw new Error(`whoami failed: ${res.statusCode}`);
  return (res.json() as { identityId: string }).identityId;
}
