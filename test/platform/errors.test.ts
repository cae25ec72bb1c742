import { randomBytes } from 'node:crypto';
import type { ErrorEnvelope } from '@coffer/contracts';
import Fastify, { type LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError } from '../../apps/api/src/errors/app-error.ts';
import { classifyError, registerErrorHandling } from '../../apps/api/src/errors/error-handler.ts';
import { bearer, createTenant, login } from '../support/factories.ts';
import { createTestApp, type TestApp } from '../support/test-app.ts';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The envelope, checked for shape: exactly `{ error: { code, message, requestId, details? } }`. */
function envelope(res: LightMyRequestResponse, status: number, code: string): ErrorEnvelope['error'] {
  expect(res.statusCode, res.body).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/json/);
  const body = res.json() as ErrorEnvelope;
  expect(Object.keys(body)).toEqual(['error']);
  expect(Object.keys(body.error).filter((k) => k !== 'details')).toEqual(['code', 'message', 'requestId']);
  expect(body.error.code).toBe(code);
  expect(body.error.message.length).toBeGreaterThan(0);
  expect(body.error.requestId).toBe(res.headers['x-request-id']);
  return body.error;
}

const token = (payload: string, contentType = 'application/json') =>
  t.app.inject({ method: 'POST', url: '/v1/auth/token', headers: { 'content-type': contentType }, payload });

describe('error envelope', () => {
  it('an unknown route is 404 not_found', async () => {
    const err = envelope(await t.app.inject({ url: '/v1/nothing-here?x=1' }), 404, 'not_found');
    expect(err.details).toBeUndefined();
    envelope(await t.app.inject({ method: 'DELETE', url: '/v1/tenants' }), 404, 'not_found');
  });

  it('bad JSON is 400 validation_failed', async () => {
    envelope(await token('{"clientId": "x", '), 400, 'validation_failed');
    envelope(await token(''), 400, 'validation_failed');
  });

  it('a body over the configured limit is 413 payload_too_large', async () => {
    const small = await createTestApp({ COFFER_BODY_LIMIT_BYTES: '2048' });
    try {
      const big = JSON.stringify({ clientId: 'root', clientSecret: 'x'.repeat(4096) });
      const res = await small.app.inject({
        method: 'POST',
        url: '/v1/auth/token',
        headers: { 'content-type': 'application/json' },
        payload: big,
      });
      envelope(res, 413, 'payload_too_large');
      // Just under the limit is read and judged on its merits (here: wrong credentials).
      const fits = await small.app.inject({
        method: 'POST',
        url: '/v1/auth/token',
        payload: { clientId: 'root', clientSecret: 'x'.repeat(400) },
      });
      envelope(fits, 401, 'unauthorized');
    } finally {
      await small.close();
    }
  });

  it('a body that is not JSON is 415 unsupported_media_type', async () => {
    envelope(await token('<token/>', 'application/xml'), 415, 'unsupported_media_type');
    envelope(await token('clientId=root', 'application/x-www-form-urlencoded'), 415, 'unsupported_media_type');
  });

  it('a schema failure lists details with the path of each bad field', async () => {
    const tenant = await createTenant(t.app);
    const res = await t.app.inject({
      method: 'POST',
      url: '/v1/identities',
      headers: bearer(tenant.adminToken),
      payload: { name: '', role: 'boss', policies: [{ path: 'no spaces allowed', capabilities: [] }] },
    });
    const err = envelope(res, 400, 'validation_failed');
    const paths = err.details?.map((d) => d.path) ?? [];
    expect(paths).toEqual(expect.arrayContaining(['body.name', 'body.role', 'body.policies.0.path']));
    for (const d of err.details ?? []) expect(d.message.length).toBeGreaterThan(0);

    const q = envelope(
      await t.app.inject({ url: '/v1/identities?limit=abc', headers: bearer(tenant.adminToken) }),
      400,
      'validation_failed',
    );
    expect(q.details?.map((d) => d.path)).toContain('querystring.limit');
  });

  it('a validation message never echoes the submitted value', async () => {
    const marker = `mk${randomBytes(8).toString('hex')}`;
    const tenant = await createTenant(t.app);
    const res = await t.app.inject({
      method: 'POST',
      url: '/v1/identities',
      headers: bearer(tenant.adminToken),
      payload: { name: 'x', role: marker, policies: [{ path: `${marker} !`, capabilities: [marker] }] },
    });
    envelope(res, 400, 'validation_failed');
    expect(res.body).not.toContain(marker);
  });
});

describe('request ids', () => {
  it('generates one, sends it as x-request-id and in the body', async () => {
    const res = await t.app.inject({ url: '/v1/nope' });
    expect(res.headers['x-request-id']).toMatch(UUID);
    expect((res.json() as ErrorEnvelope).error.requestId).toBe(res.headers['x-request-id']);
    const again = await t.app.inject({ url: '/v1/nope' });
    expect(again.headers['x-request-id']).not.toBe(res.headers['x-request-id']);
  });

  it('reuses a sane caller-supplied id, on errors and on successes', async () => {
    const id = `trace-${randomBytes(6).toString('hex')}:1.a_b`;
    const res = await t.app.inject({ url: '/v1/nope', headers: { 'x-request-id': id } });
    expect(res.headers['x-request-id']).toBe(id);
    expect((res.json() as ErrorEnvelope).error.requestId).toBe(id);
    const ok = await t.app.inject({ url: '/healthz', headers: { 'x-request-id': id } });
    expect(ok.statusCode).toBe(200);
    expect(ok.headers['x-request-id']).toBe(id);
  });

  it.each([
    ['too long', 'a'.repeat(65)],
    ['with spaces', 'a b'],
    ['with markup', '<script>'],
    ['with a log-injection attempt', 'x","level":60,"msg":"forged'],
  ])('replaces an id %s with a fresh one', async (_name, id) => {
    const res = await t.app.inject({ url: '/v1/nope', headers: { 'x-request-id': id } });
    expect(res.headers['x-request-id']).toMatch(UUID);
    expect(res.body).not.toContain(id);
  });
});

describe('5xx answers carry no internals', () => {
  it('classifyError turns an unknown error into a bare internal error', () => {
    const internal = new Error('ECONNREFUSED 10.0.0.5:5432 user=coffer password=hunter2 at /srv/app/db.ts:42');
    expect(classifyError(internal)).toEqual({ code: 'internal', message: 'internal error' });
    expect(classifyError(Object.assign(new Error('stack smashed'), { statusCode: 500 }))).toEqual({
      code: 'internal',
      message: 'internal error',
    });
    // An AppError keeps its own (caller-facing) message.
    expect(classifyError(new AppError('conflict', 'already there'))).toMatchObject({
      code: 'conflict',
      message: 'already there',
    });
  });

  it('the error handler answers an unexpected throw with 500 internal and nothing else', async () => {
    const app = Fastify({ logger: false });
    registerErrorHandling(app, {
      record: () => Promise.reject(new Error('routes without an action must not be audited')),
    });
    app.get('/boom', async () => {
      throw new Error('password=hunter2 select * from coffer.identities at /srv/app/x.ts:1');
    });
    try {
      const res = await app.inject({ url: '/boom' });
      expect(res.statusCode).toBe(500);
      const body = res.json() as ErrorEnvelope;
      expect(body.error).toEqual({ code: 'internal', message: 'internal error', requestId: expect.any(String) });
      expect(res.body).not.toMatch(/hunter2|select|srv|stack/);
    } finally {
      await app.close();
    }
  });

  it('a lost database answers 503 unavailable with Retry-After and no driver message', async () => {
    const broken = await createTestApp();
    const tenant = await createTenant(broken.app);
    const adminToken = await login(broken.app, tenant.admin.clientId, tenant.admin.clientSecret);
    await broken.db.pool.end();
    try {
      for (const res of [
        await broken.app.inject({ url: '/v1/auth/whoami', headers: bearer(adminToken) }),
        await broken.app.inject({ url: '/v1/identities', headers: bearer(adminToken) }),
        await broken.app.inject({
          method: 'POST',
          url: '/v1/auth/token',
          payload: { clientId: tenant.admin.clientId, clientSecret: tenant.admin.clientSecret },
        }),
      ]) {
        const err = envelope(res, 503, 'unavailable');
        expect(res.headers['retry-after']).toBe('1');
        expect(err.message).not.toMatch(/pool|Cannot|calling end|pg|postgres/i);
      }
    } finally {
      await broken.app.close();
    }
  });

  // Regression test: this was a bug the first version of this suite found.
  it('classifyError treats a thrown string or null as a bare internal error', () => {
    expect(classifyError('a thrown string')).toEqual({ code: 'internal', message: 'internal error' });
    expect(classifyError(null)).toEqual({ code: 'internal', message: 'internal error' });
  });

  // Regression test: this was a bug the first version of this suite found.
  it('a thrown string is answered with the envelope, without repeating the string', async () => {
    const app = Fastify({ logger: false });
    registerErrorHandling(app, { record: () => Promise.resolve() });
    app.get('/boom', async () => {
      throw 'internal detail: password=hunter2';
    });
    try {
      const res = await app.inject({ url: '/boom' });
      expect(res.statusCode).toBe(500);
      expect(res.body).not.toContain('hunter2');
      expect((res.json() as ErrorEnvelope).error).toMatchObject({ code: 'internal', message: 'internal error' });
    } finally {
      await app.close();
    }
  });
});

describe('readiness', () => {
  it('answers 200 ready with every check passing', async () => {
    const res = await t.app.inject({ url: '/readyz' });
    expect(res.statusCode).toBe(200);
    const body = res.json() as { status: string; checks: { name: string; ok: boolean }[] };
    expect(body.status).toBe('ready');
    expect(body.checks.map((c) => c.name).sort()).toEqual(['database', 'master-keyring', 'migrations']);
    expect(body.checks.every((c) => c.ok)).toBe(true);
  });

  // Regression test: this was a bug the first version of this suite found.
  it('answers 503 not_ready naming the failing check when the database is gone', async () => {
    const broken = await createTestApp();
    await broken.db.pool.end();
    try {
      const res = await broken.app.inject({ url: '/readyz' });
      expect(res.statusCode).toBe(503);
      const body = res.json() as { status: string; checks: { name: string; ok: boolean }[] };
      expect(body.status).toBe('not_ready');
      expect(body.checks.find((c) => c.name === 'database')?.ok).toBe(false);
    } finally {
      await broken.app.close();
    }
  });
});
