import {
  AuditPage,
  AuditSummary,
  AuditVerifyResult,
  DataKeys,
  RotationDue,
  RotationLog,
  SecretWithValue,
} from '@coffer/contracts';
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { type AuditRow, auditRowsFor, auditRowsOf } from '../support/audit.ts';
import { bearer, createIdentity } from '../support/factories.ts';
import { type OpsApi, opsApi } from '../support/ops.ts';
import {
  expectError,
  expectOk,
  identityIdOf,
  type Response,
  requestIdOf,
  secretsApi,
  sleep,
} from '../support/secrets.ts';
import { ownerSuite, tenantCtx } from '../support/suite.ts';
import type { TestApp } from '../support/test-app.ts';

let t: TestApp;
let owner: pg.Client;
let root: string;

ownerSuite((s) => {
  ({ t, owner, root } = s);
});

/** Every item of a query, following cursors. */
async function allPages(ops: OpsApi, query: Record<string, string | number | undefined>): Promise<AuditPage['items']> {
  const items: AuditPage['items'] = [];
  let cursor: string | undefined;
  for (let i = 0; i < 1000; i++) {
    const page = expectOk(await ops.audit({ ...query, cursor }), 200, AuditPage);
    items.push(...page.items);
    if (!page.nextCursor) return items;
    cursor = page.nextCursor;
  }
  throw new Error('too many pages');
}

describe('GET /v1/audit filters', () => {
  it('filters by actor, action, action prefix, path prefix, outcome, time, and their combination', async () => {
    const { tenant, tid, api, ops } = await tenantCtx(t, root);
    const adminId = await identityIdOf(t.app, tenant.adminToken);
    const svc = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      policies: [{ path: 'sandbox/app/*', capabilities: ['read', 'write'] }],
    });
    const auditor = await createIdentity(t.app, tenant.adminToken, { role: 'auditor' });
    const asSvc = secretsApi(t.app, svc.token);

    expect((await api.put('sandbox/app/ONE', { value: 'v' })).statusCode).toBe(201);
    expect((await api.put('sandbox/app_x/TWO', { value: 'v' })).statusCode).toBe(201);
    expect((await api.put('sandbox/appYx/THREE', { value: 'v' })).statusCode).toBe(201);
    await sleep(5);
    const from = new Date().toISOString();
    const svcRead = await asSvc.get('sandbox/app/ONE');
    expect(svcRead.statusCode).toBe(200);
    const svcDenied = await asSvc.get('sandbox/other/X');
    expectError(svcDenied, 403, 'forbidden');
    expect((await asSvc.put('sandbox/app/FOUR', { value: 'v' })).statusCode).toBe(201);
    const missing = await api.get('sandbox/app/MISSING');
    expectError(missing, 404, 'not_found');
    await sleep(5);
    const to = new Date().toISOString();
    expect((await ops.rotate('sandbox/app/ONE', { value: 'v2' })).statusCode).toBe(200);
    expectError(await secretsApi(t.app, auditor.token).get('sandbox/app/ONE'), 403, 'forbidden');

    const asAuditor = opsApi(t.app, auditor.token);
    const seqsOf = (items: AuditPage['items']) => items.map((i) => i.seq);
    /** The API's answer equals the tenant's rows (read as the owner, just before) that satisfy `keep`, newest first. */
    async function check(query: Record<string, string>, keep: (r: AuditRow) => boolean): Promise<AuditPage['items']> {
      const expected = (await auditRowsOf(owner, tid))
        .filter(keep)
        .map((r) => Number(r.seq))
        .reverse();
      const items = await allPages(asAuditor, { ...query, limit: 3 });
      expect({ query, seqs: seqsOf(items) }).toEqual({ query, seqs: expected });
      return items;
    }

    const bySvc = await check({ actor: svc.identity.id }, (r) => r.actor_id === svc.identity.id);
    expect(bySvc.map((i) => [i.action, i.outcome])).toEqual([
      ['secrets.write', 'allowed'],
      ['secrets.read', 'denied'],
      ['secrets.read', 'allowed'],
      ['auth.token', 'allowed'],
    ]);
    const reads = await check({ action: 'secrets.read' }, (r) => r.action === 'secrets.read');
    expect(reads.map((i) => [i.resource, i.outcome])).toEqual([
      ['sandbox/app/ONE', 'denied'],
      ['sandbox/app/MISSING', 'error'],
      ['sandbox/other/X', 'denied'],
      ['sandbox/app/ONE', 'allowed'],
    ]);
    const secretActions = await check({ action: 'secrets.' }, (r) => r.action.startsWith('secrets.'));
    expect(new Set(secretActions.map((i) => i.action))).toEqual(
      new Set(['secrets.write', 'secrets.read', 'secrets.rotate']),
    );
    // A path prefix, with LIKE wildcards taken literally: `app_` does not match `app/` or `appY`.
    const app = await check({ path: 'sandbox/app/' }, (r) => (r.resource ?? '').startsWith('sandbox/app/'));
    expect(new Set(app.map((i) => i.resource))).toEqual(
      new Set(['sandbox/app/ONE', 'sandbox/app/FOUR', 'sandbox/app/MISSING']),
    );
    const underscore = await check({ path: 'sandbox/app_' }, (r) => (r.resource ?? '').startsWith('sandbox/app_'));
    expect(underscore.map((i) => i.resource)).toEqual(['sandbox/app_x/TWO']);
    await check({ path: 'sandbox/app/ONE' }, (r) => (r.resource ?? '').startsWith('sandbox/app/ONE'));
    const denied = await check({ outcome: 'denied' }, (r) => r.outcome === 'denied');
    expect(denied.map((i) => i.actorId)).toEqual([auditor.identity.id, svc.identity.id]);
    const errors = await check({ outcome: 'error' }, (r) => r.outcome === 'error');
    expect(errors.map((i) => [i.action, i.errorCode, i.requestId])).toEqual([
      ['secrets.read', 'not_found', requestIdOf(missing)],
    ]);
    await check({ outcome: 'allowed' }, (r) => r.outcome === 'allowed');
    const window = await check(
      { from, to },
      (r) => r.occurred_at.getTime() >= Date.parse(from) && r.occurred_at.getTime() < Date.parse(to),
    );
    expect(window.map((i) => i.requestId)).toEqual(
      expect.arrayContaining([requestIdOf(svcRead), requestIdOf(svcDenied), requestIdOf(missing)]),
    );
    expect(window.some((i) => i.action === 'secrets.rotate')).toBe(false);
    expect(window.some((i) => i.resource === 'sandbox/app_x/TWO')).toBe(false);

    // All together: exactly the service's allowed read of ONE in the window.
    const combined = await check(
      { actor: svc.identity.id, action: 'secrets.read', path: 'sandbox/app/', outcome: 'allowed', from, to },
      (r) =>
        r.actor_id === svc.identity.id &&
        r.action === 'secrets.read' &&
        (r.resource ?? '').startsWith('sandbox/app/') &&
        r.outcome === 'allowed' &&
        r.occurred_at.getTime() >= Date.parse(from) &&
        r.occurred_at.getTime() < Date.parse(to),
    );
    expect(combined).toHaveLength(1);
    expect(combined[0]).toMatchObject({
      requestId: requestIdOf(svcRead),
      actorId: svc.identity.id,
      actorName: svc.identity.name,
      resource: 'sandbox/app/ONE',
      version: 1,
    });
    // Each item carries its chain link.
    expect(combined[0]?.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(combined[0]?.prevHash).toMatch(/^[0-9a-f]{64}$/);
    // The admin sees the same as the auditor.
    expect(seqsOf(await allPages(ops, { actor: adminId, action: 'secrets.write' }))).toEqual(
      (await auditRowsOf(owner, tid))
        .filter((r) => r.actor_id === adminId && r.action === 'secrets.write')
        .map((r) => Number(r.seq))
        .reverse(),
    );
    // Filters that match nothing.
    expect(expectOk(await ops.audit({ action: 'tenants.create' }), 200, AuditPage)).toEqual({
      items: [],
      nextCursor: null,
    });
  });

  it('refuses malformed filters with 400', async () => {
    const { ops } = await tenantCtx(t, root);
    for (const query of [
      { actor: 'not-a-uuid' },
      { action: 'Secrets.Read' },
      { action: 'secrets.*' },
      { path: 'sandbox app' },
      { path: "sandbox/%'" },
      { outcome: 'maybe' },
      { from: 'yesterday' },
      { limit: 0 },
      { limit: 1001 },
      { cursor: 'bm90LWEtY3Vyc29y' },
      { cursor: 'not a cursor' },
    ]) {
      expectError(await ops.audit(query), 400, 'validation_failed');
    }
  });
});

describe('GET /v1/audit pagination', () => {
  it('is keyset-stable while other requests keep appending events', async () => {
    const { api, ops } = await tenantCtx(t, root);
    for (let i = 0; i < 40; i++) expect((await api.put(`sandbox/p/S_${i}`, { value: `v${i}` })).statusCode).toBe(201);

    let stop = false;
    let added = 0;
    const writer = (async () => {
      for (let i = 0; !stop; i++) {
        expect((await api.put(`sandbox/p/LIVE_${i % 5}`, { value: `live-${i}` })).statusCode).toBeLessThan(300);
        added++;
      }
    })();
    const items: AuditPage['items'] = [];
    try {
      let cursor: string | undefined;
      do {
        const page = expectOk(await ops.audit({ limit: 7, cursor }), 200, AuditPage);
        items.push(...page.items);
        cursor = page.nextCursor ?? undefined;
        await sleep(2);
      } while (cursor);
    } finally {
      stop = true;
      await writer;
    }
    expect(added).toBeGreaterThan(0);
    // Everything up to the first item's position, each once, in order, and nothing written later.
    const seqs = items.map((i) => i.seq);
    const top = seqs[0] ?? 0;
    expect(top).toBeGreaterThanOrEqual(40);
    expect(seqs).toEqual(Array.from({ length: top }, (_, i) => top - i));
    expect(new Set(items.map((i) => i.id)).size).toBe(items.length);
  });
});

describe('tenant isolation of the audit log', () => {
  it('a tenant admin sees only its own tenant’s events, whatever the filter', async () => {
    const a = await tenantCtx(t, root);
    const b = await tenantCtx(t, root);
    const bAdmin = await identityIdOf(t.app, b.tenant.adminToken);
    // Same path in both tenants.
    await a.api.put('sandbox/app/SAME', { value: 'a' });
    const bWrite = await b.api.put('sandbox/app/SAME', { value: 'b' });
    await b.api.get('sandbox/app/SAME');

    const aItems = await allPages(a.ops, { limit: 1000 });
    const aRows = await auditRowsOf(owner, a.tid);
    expect(new Set(aItems.map((i) => i.id)).size).toBe(aItems.length);
    expect(aItems.every((i) => aRows.some((r) => Number(r.seq) === i.seq && r.hash.toString('hex') === i.hash))).toBe(
      true,
    );
    expect(aItems.some((i) => i.requestId === requestIdOf(bWrite))).toBe(false);
    expect(expectOk(await a.ops.audit({ actor: bAdmin }), 200, AuditPage).items).toEqual([]);
    expect(
      expectOk(await a.ops.audit({ path: 'sandbox/app/SAME' }), 200, AuditPage).items.map((i) => i.actorId),
    ).toEqual([await identityIdOf(t.app, a.tenant.adminToken)]);
    // Export, verify and summary are scoped the same way.
    const exported = await a.ops.exportAudit({ format: 'ndjson' });
    expect(exported.statusCode).toBe(200);
    expect(exported.body).not.toContain(requestIdOf(bWrite));
    expect(exported.body).not.toContain(bAdmin);
    const summary = expectOk(await a.ops.summary(), 200, AuditSummary);
    expect(summary.byActor.some((x) => x.actorId === bAdmin)).toBe(false);
    expect(expectOk(await a.ops.verify(), 200, AuditVerifyResult)).toMatchObject({ ok: true });
    // The platform admin reads the platform's chain, not a tenant's.
    expect(expectOk(await opsApi(t.app, root).audit({ actor: bAdmin }), 200, AuditPage).items).toEqual([]);
    expect(
      expectOk(await opsApi(t.app, root).audit({ path: `tenants/${b.tid}` }), 200, AuditPage).items.map(
        (i) => i.action,
      ),
    ).toEqual(['tenants.create']);
  });
});

describe('the auditor role', () => {
  it('reads the record of what happened, never a secret value, and cannot change anything', async () => {
    const { tenant, tid, api } = await tenantCtx(t, root);
    const V = 'auditor-must-never-see-this';
    await api.put('sandbox/app/SECRET', { value: V });
    await api.put('sandbox/app/SECRET', { value: `${V}-2` });
    const auditor = await createIdentity(t.app, tenant.adminToken, { role: 'auditor' });
    const as = secretsApi(t.app, auditor.token);
    const asOps = opsApi(t.app, auditor.token);
    const send = (
      method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE',
      url: string,
      payload?: Record<string, unknown>,
    ) => t.app.inject({ method, url, headers: bearer(auditor.token), ...(payload ? { payload } : {}) });

    const attempts: [string, Response][] = [
      ['read', await as.get('sandbox/app/SECRET')],
      ['read old version', await as.get('sandbox/app/SECRET', 1)],
      ['read previous', await as.get('sandbox/app/SECRET', 'previous')],
      ['bundle', await as.bundle('sandbox', 'app')],
      ['versions', await as.versions('sandbox/app/SECRET')],
      ['list', await as.list()],
      ['write', await as.put('sandbox/app/SECRET', { value: 'x' })],
      ['create', await as.put('sandbox/app/NEW', { value: 'x' })],
      ['patch', await asOps.patch('sandbox/app/SECRET', { description: 'x' })],
      ['delete', await as.remove('sandbox/app/SECRET')],
      ['purge', await as.remove('sandbox/app/SECRET', true)],
      ['restore', await as.restore('sandbox/app/SECRET')],
      ['destroy', await as.destroy('sandbox/app/SECRET', 1)],
      ['bundle write', await as.writeBundle('sandbox', 'app', { set: { X: { value: 'x' } } })],
      ['rotate', await asOps.rotate('sandbox/app/SECRET', { value: 'x' })],
      ['rotate data key', await asOps.rotateKey()],
      ['create webhook', await asOps.createWebhook({ url: 'http://127.0.0.1:9/x', events: ['key.rotated'] })],
      ['list webhooks', await asOps.webhooks()],
      ['create identity', await send('POST', '/v1/identities', { name: 'evil', role: 'admin' })],
      ['list identities', await send('GET', '/v1/identities')],
      ['update itself', await send('PATCH', `/v1/identities/${auditor.identity.id}`, { role: 'admin' })],
      ['delete itself', await send('DELETE', `/v1/identities/${auditor.identity.id}`)],
      ['rewrap', await asOps.rewrap()],
      ['tenants', await send('GET', '/v1/tenants')],
    ];
    for (const [label, res] of attempts) {
      expect({ label, status: res.statusCode }).toEqual({ label, status: 403 });
      expect(res.body).not.toContain(V);
      const rows = await auditRowsFor(owner, requestIdOf(res));
      expect({ label, rows: rows.map((r) => [r.tenant_id, r.outcome, r.actor_id]) }).toEqual({
        label,
        rows: [[tid, 'denied', auditor.identity.id]],
      });
    }
    // Nothing changed.
    expect(expectOk(await api.get('sandbox/app/SECRET'), 200, SecretWithValue)).toMatchObject({
      version: 2,
      value: `${V}-2`,
    });
    expectError(await api.get('sandbox/app/NEW'), 404, 'not_found');

    // What an auditor may do, none of which shows a value.
    const allowed: Response[] = [
      await asOps.audit(),
      await asOps.exportAudit({ format: 'ndjson' }),
      await asOps.exportAudit({ format: 'csv' }),
      await asOps.verify(),
      await asOps.summary(),
      await asOps.due(),
      await asOps.log(),
      await asOps.keys(),
    ];
    for (const [i, res] of allowed.entries()) {
      expect({ i, status: res.statusCode }).toEqual({ i, status: 200 });
      expect(res.body).not.toContain(V);
    }
    expectOk(allowed[0] as Response, 200, AuditPage);
    expectOk(allowed[5] as Response, 200, RotationDue);
    expectOk(allowed[6] as Response, 200, RotationLog);
    expectOk(allowed[7] as Response, 200, DataKeys);
  });
});

describe('GET /v1/audit/summary', () => {
  it('counts by action, outcome and actor, and lists which secrets each identity read', async () => {
    const { tenant, tid, api, ops } = await tenantCtx(t, root);
    const svc = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      policies: [{ path: 'sandbox/app/*', capabilities: ['read'] }],
    });
    const narrow = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      policies: [{ path: 'sandbox/app/A', capabilities: ['read'] }],
    });
    for (const n of ['A', 'B', 'C']) await api.put(`sandbox/app/${n}`, { value: n });
    const s = secretsApi(t.app, svc.token);
    const n2 = secretsApi(t.app, narrow.token);
    await s.get('sandbox/app/A');
    await s.get('sandbox/app/A');
    await s.get('sandbox/app/B');
    expect((await s.bundle('sandbox', 'app')).statusCode).toBe(200);
    await n2.get('sandbox/app/A');
    expectError(await n2.get('sandbox/app/B'), 403, 'forbidden');
    // The narrow service's bundle holds only what it may read.
    expect((await n2.bundle('sandbox', 'app')).statusCode).toBe(200);
    await sleep(5);
    const later = new Date().toISOString();
    await s.get('sandbox/app/C');

    const rows = await auditRowsOf(owner, tid);
    const summary = expectOk(await ops.summary(), 200, AuditSummary);
    const count = (keep: (r: AuditRow) => boolean) => rows.filter(keep).length;
    expect(summary.total).toBe(rows.length);
    expect(summary.from).toBeNull();
    expect(summary.to).toBeNull();
    const actions = new Set(rows.map((r) => r.action));
    expect(summary.byAction).toEqual(
      Object.fromEntries([...actions].sort().map((a) => [a, count((r) => r.action === a)])),
    );
    expect(summary.byAction['secrets.write']).toBe(3);
    expect(summary.byAction['secrets.read']).toBe(6);
    expect(summary.byAction['bundles.read']).toBe(2);
    expect(summary.byOutcome).toEqual({
      allowed: count((r) => r.outcome === 'allowed'),
      denied: 1,
    });
    const actor = (id: string) => summary.byActor.find((x) => x.actorId === id);
    expect(actor(svc.identity.id)).toEqual({
      actorId: svc.identity.id,
      actorName: svc.identity.name,
      total: count((r) => r.actor_id === svc.identity.id),
      denied: 0,
    });
    expect(actor(narrow.identity.id)).toMatchObject({
      denied: 1,
      total: count((r) => r.actor_id === narrow.identity.id),
    });
    const totals = summary.byActor.map((x) => x.total);
    expect([...totals].sort((x, y) => y - x)).toEqual(totals);

    // The access review: direct reads and reads through bundles, per identity.
    const readsOf = (id: string) => summary.secretsReadBy.find((x) => x.actorId === id)?.secrets;
    expect(readsOf(svc.identity.id)).toEqual([
      { path: 'sandbox/app/A', reads: 3 },
      { path: 'sandbox/app/B', reads: 2 },
      { path: 'sandbox/app/C', reads: 2 },
    ]);
    expect(readsOf(narrow.identity.id)).toEqual([{ path: 'sandbox/app/A', reads: 2 }]);
    expect(readsOf(await identityIdOf(t.app, tenant.adminToken))).toBeUndefined();

    // A time range narrows every count.
    const recent = expectOk(await ops.summary({ from: later }), 200, AuditSummary);
    expect(recent.from).toBe(later);
    expect(recent.byAction['secrets.read']).toBe(1);
    expect(recent.byAction['secrets.write']).toBeUndefined();
    expect(recent.secretsReadBy).toEqual([
      { actorId: svc.identity.id, actorName: svc.identity.name, secrets: [{ path: 'sandbox/app/C', reads: 1 }] },
    ]);
    const before = expectOk(await ops.summary({ to: later }), 200, AuditSummary);
    expect(before.byAction['secrets.read']).toBe(5);
    expect(readsOf(svc.identity.id)).not.toEqual(
      before.secretsReadBy.find((x) => x.actorId === svc.identity.id)?.secrets,
    );
  });
});
