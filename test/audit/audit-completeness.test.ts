import { randomBytes, randomUUID } from 'node:crypto';
import { AuditVerifyResult, PLATFORM_TENANT_ID } from '@coffer/contracts';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AuditRow, auditRowsOf, firstBrokenLink } from '../support/audit.ts';
import { createIdentity, createTenant, rootToken } from '../support/factories.ts';
import { opsApi } from '../support/ops.ts';
import { expectOk, ownerClient, type Response, secretsApi } from '../support/secrets.ts';
import { createTestApp, type TestApp } from '../support/test-app.ts';

let t: TestApp;
let owner: pg.Client;
let root: string;

beforeAll(async () => {
  // Hundreds of requests a second from one identity: not what this test is about.
  // Behind a declared proxy, so each unauthenticated request can come from an address of its own: repeated
  // identical refusals from one address are written as one event with a count (see the audit flood test).
  t = await createTestApp({ COFFER_RATE_LIMIT_PER_SECOND: '1000000', COFFER_TLS_TERMINATED_UPSTREAM: 'true' });
  owner = await ownerClient();
  root = await rootToken(t.app);
});
afterAll(async () => {
  await owner.end();
  await t.close();
});

interface Expected {
  tenant: string;
  action: string;
  outcome: 'allowed' | 'denied' | 'error';
  errorCode: string | null;
  status: number;
}

describe('audit completeness under load', () => {
  it('300 concurrent mixed requests leave exactly one event each, none missing, none duplicated', async () => {
    const a = await createTenant(t.app, root);
    const b = await createTenant(t.app, root);
    const A = a.tenant.id;
    const B = b.tenant.id;
    const svc = await createIdentity(t.app, a.adminToken, {
      role: 'service',
      policies: [
        { path: 'sandbox/app/*', capabilities: ['read', 'write'] },
        { path: 'sandbox/ro/*', capabilities: ['read'] },
      ],
    });
    const auditor = await createIdentity(t.app, a.adminToken, { role: 'auditor' });
    const admin = secretsApi(t.app, a.adminToken);
    for (let i = 0; i < 10; i++)
      expect((await admin.put(`sandbox/app/S_${i}`, { value: `s${i}` })).statusCode).toBe(201);
    expect((await admin.put('sandbox/ro/R', { value: 'r' })).statusCode).toBe(201);
    expect((await admin.put('sandbox/secret/X', { value: 'x' })).statusCode).toBe(201);
    expect((await admin.put('sandbox/app/ID', { value: randomUUID(), format: 'uuid' })).statusCode).toBe(201);
    expect((await secretsApi(t.app, b.adminToken).put('sandbox/app/S_0', { value: 'b0' })).statusCode).toBe(201);
    const beforeA = (await auditRowsOf(owner, A)).length;
    const beforeB = (await auditRowsOf(owner, B)).length;

    const run = `cmp-${randomBytes(4).toString('hex')}`;
    const kinds: ((i: number, id: Record<string, string>) => [Promise<Response>, Expected])[] = [
      (i, h) => [
        secretsApi(t.app, a.adminToken, h).get(`sandbox/app/S_${i % 10}`),
        { tenant: A, action: 'secrets.read', outcome: 'allowed', errorCode: null, status: 200 },
      ],
      (i, h) => [
        secretsApi(t.app, svc.token, h).put(`sandbox/app/W_${i}`, { value: `w${i}` }),
        { tenant: A, action: 'secrets.write', outcome: 'allowed', errorCode: null, status: 201 },
      ],
      (_, h) => [
        secretsApi(t.app, svc.token, h).get('sandbox/secret/X'),
        { tenant: A, action: 'secrets.read', outcome: 'denied', errorCode: 'forbidden', status: 403 },
      ],
      (i, h) => [
        secretsApi(t.app, svc.token, h).put('sandbox/ro/R', { value: `nope${i}` }),
        { tenant: A, action: 'secrets.write', outcome: 'denied', errorCode: 'forbidden', status: 403 },
      ],
      (_, h) => [
        secretsApi(t.app, auditor.token, h).get('sandbox/app/S_1'),
        { tenant: A, action: 'secrets.read', outcome: 'denied', errorCode: 'forbidden', status: 403 },
      ],
      (i, h) => [
        secretsApi(t.app, a.adminToken, h).get(`sandbox/app/MISSING_${i}`),
        { tenant: A, action: 'secrets.read', outcome: 'error', errorCode: 'not_found', status: 404 },
      ],
      (i, h) => [
        secretsApi(t.app, 'not-a-token', { ...h, 'x-forwarded-for': `198.51.100.${i % 250}` }).get('sandbox/app/S_2'),
        {
          tenant: PLATFORM_TENANT_ID,
          action: 'secrets.read',
          outcome: 'denied',
          errorCode: 'unauthorized',
          status: 401,
        },
      ],
      (_, h) => [
        secretsApi(t.app, b.adminToken, h).get('sandbox/app/S_0'),
        { tenant: B, action: 'secrets.read', outcome: 'allowed', errorCode: null, status: 200 },
      ],
      (_, h) => [
        secretsApi(t.app, svc.token, h).bundle('sandbox', 'app'),
        { tenant: A, action: 'bundles.read', outcome: 'allowed', errorCode: null, status: 200 },
      ],
      (i, h) => [
        opsApi(t.app, a.adminToken, h).rotate(`sandbox/app/S_${i % 10}`, { value: `rot${i}` }),
        { tenant: A, action: 'secrets.rotate', outcome: 'allowed', errorCode: null, status: 200 },
      ],
      (_, h) => [
        opsApi(t.app, auditor.token, h).audit({ limit: 5 }),
        { tenant: A, action: 'audit.query', outcome: 'allowed', errorCode: null, status: 200 },
      ],
      (_, h) => [
        secretsApi(t.app, a.adminToken, h).put('sandbox/app/ID', { value: 'not-a-uuid' }),
        { tenant: A, action: 'secrets.write', outcome: 'error', errorCode: 'unprocessable', status: 422 },
      ],
    ];
    const N = 300;
    const expected = new Map<string, Expected>();
    const calls: Promise<[string, Response]>[] = [];
    for (let i = 0; i < N; i++) {
      const requestId = `${run}-${i}`;
      const kind = kinds[i % kinds.length];
      if (!kind) throw new Error('no kind');
      const [call, exp] = kind(i, { 'x-request-id': requestId });
      expected.set(requestId, exp);
      calls.push(call.then((res) => [requestId, res]));
    }
    const responses = await Promise.all(calls);

    for (const [requestId, res] of responses) {
      expect(res.headers['x-request-id']).toBe(requestId);
      expect({ requestId, status: res.statusCode }).toEqual({ requestId, status: expected.get(requestId)?.status });
    }

    const { rows } = await owner.query<AuditRow>(
      'select * from coffer.audit_events where request_id like $1 order by request_id',
      [`${run}-%`],
    );
    const byRequest = new Map<string, AuditRow[]>();
    for (const r of rows) byRequest.set(r.request_id ?? '', [...(byRequest.get(r.request_id ?? '') ?? []), r]);
    expect(byRequest.size).toBe(N);
    expect(rows).toHaveLength(N);
    for (const [requestId, exp] of expected) {
      const got = (byRequest.get(requestId) ?? []).map((r) => ({
        tenant: r.tenant_id,
        action: r.action,
        outcome: r.outcome,
        errorCode: r.error_code,
        status: exp.status,
      }));
      expect({ requestId, got }).toEqual({ requestId, got: [exp] });
    }

    // Nothing else was written to either tenant's chain, and both chains are whole.
    const rowsA = await auditRowsOf(owner, A);
    const rowsB = await auditRowsOf(owner, B);
    const count = (tenant: string) => [...expected.values()].filter((e) => e.tenant === tenant).length;
    expect(rowsA.length - beforeA).toBe(count(A));
    expect(rowsB.length - beforeB).toBe(count(B));
    expect(firstBrokenLink(rowsA)).toBeNull();
    expect(firstBrokenLink(rowsB)).toBeNull();
    expect(expectOk(await opsApi(t.app, a.adminToken).verify(), 200, AuditVerifyResult)).toMatchObject({ ok: true });
    expect(expectOk(await opsApi(t.app, b.adminToken).verify(), 200, AuditVerifyResult)).toMatchObject({ ok: true });
  });
});
