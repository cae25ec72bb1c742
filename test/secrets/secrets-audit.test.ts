import { createHash, randomBytes } from 'node:crypto';
import { PLATFORM_TENANT_ID, SecretVersions, SecretWithValue } from '@coffer/contracts';
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { type AuditRow, auditRowsFor, auditRowsOf, firstBrokenLink } from '../support/audit.ts';
import { createIdentity } from '../support/factories.ts';
import { expectError, expectOk, identityIdOf, type Response, secretsApi } from '../support/secrets.ts';
import { ownerSuite, tenantCtx } from '../support/suite.ts';
import type { TestApp } from '../support/test-app.ts';

let t: TestApp;
let owner: pg.Client;
let root: string;

const USER_AGENT = 'coffer-audit-test/1.0';

ownerSuite((s) => {
  ({ t, owner, root } = s);
});

/** A fresh tenant whose admin sends a known user agent, so that the events can be checked for it. */
async function tenantApi() {
  const ctx = await tenantCtx(t, root);
  return { ...ctx, api: secretsApi(t.app, ctx.tenant.adminToken, { 'user-agent': USER_AGENT }) };
}

interface Expected {
  action: string;
  outcome: 'allowed' | 'denied' | 'error';
  resource: string | null;
  version: number | null;
  error_code: string | null;
  details?: Record<string, string | number | boolean | null>;
}

const shape = (r: AuditRow): Expected => ({
  action: r.action,
  outcome: r.outcome,
  resource: r.resource,
  version: r.version,
  error_code: r.error_code,
});

const byResource = (a: Expected, b: Expected) => (a.resource ?? '').localeCompare(b.resource ?? '');

describe('audit events of the secrets routes', () => {
  it('maps each request id to exactly the expected events, and the chain verifies', async () => {
    const { tenant, api } = await tenantApi();
    const adminId = await identityIdOf(t.app, tenant.adminToken);
    const svc = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      policies: [{ path: 'sandbox/app/PUBLIC', capabilities: ['read'] }],
    });
    const service = secretsApi(t.app, svc.token, { 'user-agent': USER_AGENT });
    const anonymous = secretsApi(t.app, null, { 'user-agent': USER_AGENT });
    const P = 'sandbox/app/API_KEY';

    const script: {
      label: string;
      call: () => Promise<Response>;
      status: number;
      events: Expected[];
      tenant?: string;
    }[] = [
      {
        label: 'create',
        call: () => api.put(P, { value: 'k-1' }),
        status: 201,
        events: [
          {
            action: 'secrets.write',
            outcome: 'allowed',
            resource: P,
            version: 1,
            error_code: null,
            details: { created: true },
          },
        ],
      },
      {
        label: 'new version',
        call: () => api.put(P, { value: 'k-2', ifVersion: 1 }),
        status: 200,
        events: [
          {
            action: 'secrets.write',
            outcome: 'allowed',
            resource: P,
            version: 2,
            error_code: null,
            details: { created: false },
          },
        ],
      },
      {
        label: 'stale compare-and-set',
        call: () => api.put(P, { value: 'k-x', ifVersion: 1 }),
        status: 409,
        events: [
          {
            action: 'secrets.write',
            outcome: 'error',
            resource: P,
            version: null,
            error_code: 'conflict',
          },
        ],
      },
      {
        label: 'format failure',
        call: () => api.put('sandbox/app/ID', { value: 'nope', format: 'uuid' }),
        status: 422,
        events: [
          {
            action: 'secrets.write',
            outcome: 'error',
            resource: 'sandbox/app/ID',
            version: null,
            error_code: 'unprocessable',
          },
        ],
      },
      {
        label: 'invalid name',
        call: () => api.put('sandbox/app/1BAD', { value: 'v' }),
        status: 400,
        events: [
          {
            action: 'secrets.write',
            outcome: 'error',
            resource: 'sandbox/app/1BAD',
            version: null,
            error_code: 'validation_failed',
          },
        ],
      },
      {
        label: 'read',
        call: () => api.get(P),
        status: 200,
        events: [{ action: 'secrets.read', outcome: 'allowed', resource: P, version: 2, error_code: null }],
      },
      {
        label: 'read ?version',
        call: () => api.get(P, 1),
        status: 200,
        events: [{ action: 'secrets.read', outcome: 'allowed', resource: P, version: 1, error_code: null }],
      },
      {
        label: 'versions',
        call: () => api.versions(P),
        status: 200,
        events: [{ action: 'secrets.versions', outcome: 'allowed', resource: P, version: null, error_code: null }],
      },
      {
        label: 'list',
        call: () => api.list({ kind: 'sandbox', owner: 'app' }),
        status: 200,
        events: [
          {
            action: 'secrets.list',
            outcome: 'allowed',
            resource: 'sandbox/app',
            version: null,
            error_code: null,
            details: { count: 1 },
          },
        ],
      },
      {
        label: 'bundle read',
        call: () => api.bundle('sandbox', 'app'),
        status: 200,
        events: [
          {
            action: 'bundles.read',
            outcome: 'allowed',
            resource: 'sandbox/app',
            version: null,
            error_code: null,
            details: { count: 1, secrets: 'API_KEY@2' },
          },
        ],
      },
      {
        label: 'bundle write',
        call: () =>
          api.writeBundle('sandbox', 'app', {
            set: { API_KEY: { value: 'k-3', ifVersion: 2 }, DB_URL: { value: 'postgres://u:p@h/db', ifVersion: 0 } },
          }),
        status: 200,
        events: [
          {
            action: 'secrets.write',
            outcome: 'allowed',
            resource: P,
            version: 3,
            error_code: null,
            details: { created: false, via: 'bundle' },
          },
          {
            action: 'secrets.write',
            outcome: 'allowed',
            resource: 'sandbox/app/DB_URL',
            version: 1,
            error_code: null,
            details: { created: true, via: 'bundle' },
          },
        ],
      },
      {
        label: 'bundle write failure',
        call: () => api.writeBundle('sandbox', 'app', { set: { DB_URL: { value: 'x', ifVersion: 7 } } }),
        status: 409,
        events: [
          {
            action: 'bundles.write',
            outcome: 'error',
            resource: 'sandbox/app',
            version: null,
            error_code: 'conflict',
          },
        ],
      },
      {
        label: 'bundle delete',
        call: () => api.writeBundle('sandbox', 'app', { delete: ['DB_URL'] }),
        status: 200,
        events: [
          {
            action: 'secrets.delete',
            outcome: 'allowed',
            resource: 'sandbox/app/DB_URL',
            version: 1,
            error_code: null,
            details: { via: 'bundle' },
          },
        ],
      },
      {
        label: 'destroy',
        call: () => api.destroy(P, 1),
        status: 204,
        events: [{ action: 'secrets.destroy', outcome: 'allowed', resource: P, version: 1, error_code: null }],
      },
      {
        label: 'read destroyed',
        call: () => api.get(P, 1),
        status: 410,
        events: [{ action: 'secrets.read', outcome: 'error', resource: P, version: null, error_code: 'gone' }],
      },
      {
        label: 'delete',
        call: () => api.remove(P),
        status: 204,
        events: [{ action: 'secrets.delete', outcome: 'allowed', resource: P, version: 3, error_code: null }],
      },
      {
        label: 'restore',
        call: () => api.restore(P),
        status: 200,
        events: [{ action: 'secrets.restore', outcome: 'allowed', resource: P, version: 3, error_code: null }],
      },
      {
        label: 'purge',
        call: () => api.remove(P, true),
        status: 204,
        events: [{ action: 'secrets.purge', outcome: 'allowed', resource: P, version: 3, error_code: null }],
      },
      {
        label: 'forbidden for a service',
        call: () => service.get(P),
        status: 403,
        events: [
          {
            action: 'secrets.read',
            outcome: 'denied',
            resource: P,
            version: null,
            error_code: 'forbidden',
          },
        ],
      },
      {
        label: 'no token',
        call: () => anonymous.get(P),
        status: 401,
        tenant: PLATFORM_TENANT_ID,
        events: [
          {
            action: 'secrets.read',
            outcome: 'denied',
            resource: P,
            version: null,
            error_code: 'unauthorized',
          },
        ],
      },
      {
        label: 'not found',
        call: () => api.get('sandbox/app/NOPE'),
        status: 404,
        events: [
          {
            action: 'secrets.read',
            outcome: 'error',
            resource: 'sandbox/app/NOPE',
            version: null,
            error_code: 'not_found',
          },
        ],
      },
    ];

    const requestIds: string[] = [];
    for (const step of script) {
      const res = await step.call();
      expect(res.statusCode, `${step.label}: ${res.body}`).toBe(step.status);
      const requestId = res.headers['x-request-id'];
      if (typeof requestId !== 'string') throw new Error('no request id');
      requestIds.push(requestId);
      const rows = await auditRowsFor(owner, requestId);
      const expected = step.events.map(({ details: _d, ...e }) => e).sort(byResource);
      expect(rows.map(shape).sort(byResource), step.label).toEqual(expected);
      for (const e of step.events) {
        const row = rows.find((r) => r.resource === e.resource && r.action === e.action);
        if (e.details) expect(row?.details, step.label).toEqual(e.details);
      }
      for (const r of rows) {
        expect(r.tenant_id, step.label).toBe(step.tenant ?? tenant.tenant.id);
        expect(r.source_ip, step.label).toBe('127.0.0.1');
        expect(r.user_agent, step.label).toBe(USER_AGENT);
        const actor =
          step.label === 'no token' ? null : step.label === 'forbidden for a service' ? svc.identity.id : adminId;
        expect(r.actor_id, step.label).toBe(actor);
        expect(r.occurred_at).toBeInstanceOf(Date);
      }
    }

    // The tenant's chain holds every one of them and verifies link by link from 32 zero bytes.
    const chain = await auditRowsOf(owner, tenant.tenant.id);
    expect(firstBrokenLink(chain)).toBeNull();
    const inChain = new Set(chain.map((r) => r.request_id));
    script.forEach((step, i) => {
      if (!step.tenant) expect(inChain.has(requestIds[i] ?? ''), step.label).toBe(true);
    });
    // Writes carry a fingerprint; reads, lists and failures do not.
    for (const r of chain.filter((x) => requestIds.includes(x.request_id ?? ''))) {
      if (r.action === 'secrets.write' && r.outcome === 'allowed') expect(r.fingerprint).toMatch(/^[0-9a-f]{32}$/);
      else expect(r.fingerprint).toBeNull();
    }
  });

  it('the chain check finds an edited, a removed and a reordered event', async () => {
    const { tenant, api } = await tenantApi();
    for (const v of ['a', 'b', 'c']) await api.put('sandbox/chain/K', { value: v });
    await api.get('sandbox/chain/K');
    const chain = await auditRowsOf(owner, tenant.tenant.id);
    expect(chain.length).toBeGreaterThanOrEqual(5);
    expect(firstBrokenLink(chain)).toBeNull();

    const edited = chain.map((r) => ({ ...r }));
    const third = edited[2];
    if (!third) throw new Error('short chain');
    third.resource = 'sandbox/chain/OTHER';
    expect(firstBrokenLink(edited)).toMatchObject({ seq: 3 });

    const removed = chain.filter((_, i) => i !== 1);
    expect(firstBrokenLink(removed)).toMatchObject({ seq: 3 });

    const reordered = [...chain];
    [reordered[1], reordered[2]] = [reordered[2] as AuditRow, reordered[1] as AuditRow];
    expect(firstBrokenLink(reordered)).not.toBeNull();
  });

  it('fingerprints: equal values match within a tenant, different values and other tenants differ', async () => {
    const a = await tenantApi();
    const b = await tenantApi();
    const same = `same-${randomBytes(8).toString('hex')}`;
    const writes = [
      await a.api.put('sandbox/fp/ONE', { value: same }),
      await a.api.put('sandbox/fp/TWO', { value: same }),
      await a.api.put('sandbox/fp/ONE', { value: `${same}!` }),
      await a.api.writeBundle('sandbox', 'fp', { set: { THREE: { value: same } } }),
      await b.api.put('sandbox/fp/ONE', { value: same }),
    ];
    const fingerprints: (string | null)[] = [];
    for (const w of writes) {
      expect(w.statusCode).toBeLessThan(300);
      const rows = await auditRowsFor(owner, w.headers['x-request-id'] as string);
      expect(rows).toHaveLength(1);
      fingerprints.push(rows[0]?.fingerprint ?? null);
    }
    const [one, two, changed, bundled, otherTenant] = fingerprints;
    expect(one).toMatch(/^[0-9a-f]{32}$/);
    expect(two).toBe(one);
    expect(bundled).toBe(one);
    expect(changed).toMatch(/^[0-9a-f]{32}$/);
    expect(changed).not.toBe(one);
    expect(otherTenant).toMatch(/^[0-9a-f]{32}$/);
    expect(otherTenant).not.toBe(one);
    // Keyed: not a plain hash of the value.
    expect(createHash('sha256').update(same).digest('hex')).not.toContain(one);
  });
});

describe('reads that share a statement', () => {
  it('each served read has one event with the version it got, committed with the read; refused ones have none', async () => {
    const { tenant, api } = await tenantApi();
    for (const v of ['one', 'two', 'three']) await api.put('sandbox/batch/K', { value: `value-${v}` });
    // Fired together: the reads that arrive while the first statement is in flight go together in the next.
    const wanted: (number | 'previous' | undefined)[] = [undefined, 1, 2, 'previous', 3, 1, undefined, 2, 9, 1];
    const responses = await Promise.all([
      ...wanted.map((v) => api.get('sandbox/batch/K', v)),
      api.get('sandbox/batch/MISSING'),
    ]);
    const ids = responses.map((r) => r.headers['x-request-id'] as string);
    const { rows } = await owner.query<{ request_id: string; outcome: string; version: number | null; tx: string }>(
      `select request_id, outcome, version, xmin::text as tx from coffer.audit_events
       where tenant_id = $1 and request_id = any($2::text[])`,
      [tenant.tenant.id, ids],
    );
    const served = new Map<number | 'previous' | undefined, number>([
      [undefined, 3],
      [1, 1],
      [2, 2],
      [3, 3],
      ['previous', 2],
    ]);
    wanted.forEach((v, i) => {
      const events = rows.filter((r) => r.request_id === ids[i]);
      const version = served.get(v);
      if (version === undefined) {
        // Version 9 does not exist: a 404, whose only event is the refusal.
        expectError(responses[i] as Response, 404, 'not_found');
        expect(events.map((e) => e.outcome)).toEqual(['error']);
        return;
      }
      expect(expectOk(responses[i] as Response, 200, SecretWithValue)).toMatchObject({ version });
      expect(events.map(({ outcome, version }) => ({ outcome, version }))).toEqual([{ outcome: 'allowed', version }]);
    });
    expectError(responses.at(-1) as Response, 404, 'not_found');
    expect(rows.filter((r) => r.request_id === ids.at(-1)).map((r) => r.outcome)).toEqual(['error']);
    // Reads committed their events together: fewer transactions than served reads.
    const allowed = rows.filter((r) => r.outcome === 'allowed');
    expect(allowed).toHaveLength(9);
    expect(new Set(allowed.map((r) => r.tx)).size).toBeLessThan(allowed.length);
    expect(firstBrokenLink(await auditRowsOf(owner, tenant.tenant.id))).toBeNull();
  });
});

describe('when the audit log cannot be written', () => {
  it('refuses writes and reads with 503, changes nothing and returns no value', async () => {
    const { tenant, api } = await tenantApi();
    expect((await api.put('sandbox/app/KEY', { value: 'before-the-outage' })).statusCode).toBe(201);
    expect((await api.put('sandbox/app/OTHER', { value: 'other-value' })).statusCode).toBe(201);
    const name = `coffer_test_audit_fail_${randomBytes(6).toString('hex')}`;
    await owner.query(
      `create function public.${name}() returns trigger language plpgsql as $$
       begin raise exception 'audit store unavailable (test)'; end $$`,
    );
    const refused: Response[] = [];
    try {
      await owner.query(
        `create trigger ${name} before insert on coffer.audit_events for each row
         when (new.tenant_id = '${tenant.tenant.id}'::uuid) execute function public.${name}()`,
      );
      const put = await api.put('sandbox/app/KEY', { value: 'during-the-outage' });
      const get = await api.get('sandbox/app/KEY');
      const getOld = await api.get('sandbox/app/KEY', 1);
      const created = await api.put('sandbox/app/NEW', { value: 'new-during-outage' });
      const del = await api.remove('sandbox/app/OTHER');
      const purge = await api.remove('sandbox/app/OTHER', true);
      const bundleWrite = await api.writeBundle('sandbox', 'app', {
        set: { KEY: { value: 'bundle-during-outage' } },
        delete: ['OTHER'],
      });
      const bundleRead = await api.bundle('sandbox', 'app');
      const versions = await api.versions('sandbox/app/KEY');
      const list = await api.list();
      refused.push(put, get, getOld, created, del, purge, bundleWrite, bundleRead, versions, list);
      for (const res of refused) {
        expectError(res, 503, 'unavailable');
        expect(res.headers['retry-after']).toBeDefined();
        expect(res.body).not.toContain('before-the-outage');
        expect(res.body).not.toContain('other-value');
      }
    } finally {
      await owner.query(`drop trigger if exists ${name} on coffer.audit_events`);
      await owner.query(`drop function if exists public.${name}()`);
    }

    expect(expectOk(await api.get('sandbox/app/KEY'), 200, SecretWithValue)).toMatchObject({
      version: 1,
      value: 'before-the-outage',
    });
    expect(expectOk(await api.versions('sandbox/app/KEY'), 200, SecretVersions).items).toHaveLength(1);
    expect(expectOk(await api.get('sandbox/app/OTHER'), 200, SecretWithValue).value).toBe('other-value');
    expectError(await api.get('sandbox/app/NEW'), 404, 'not_found');
    // None of the refused requests left a trace in the log, and the chain is whole.
    for (const res of refused) expect(await auditRowsFor(owner, res.headers['x-request-id'] as string)).toEqual([]);
    expect(firstBrokenLink(await auditRowsOf(owner, tenant.tenant.id))).toBeNull();
  });
});
