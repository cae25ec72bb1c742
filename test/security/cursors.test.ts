import { AuditPage, RotationLog, SecretPage } from '@coffer/contracts';
import { describe, expect, it } from 'vitest';
import { bearer, createIdentity, createTenant } from '../support/factories.ts';
import { expectError, expectOk, secretsApi } from '../support/secrets.ts';
import { ownerSuite } from '../support/suite.ts';
import type { TestApp } from '../support/test-app.ts';

/**
 * List cursors: a service must learn no name it may not list from a cursor, and nobody may craft, tamper with or
 * carry a cursor to another tenant, identity or query. The secrets list, the audit log and the rotation log.
 */

let t: TestApp;
let root: string;
ownerSuite((s) => {
  ({ t, root } = s);
});

const b64json = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
/** Every string a cursor's bytes could show, whatever encoding a client tries. */
const readable = (cursor: string) => Buffer.from(cursor, 'base64url').toString('latin1');
const tamper = (cursor: string) => {
  const raw = Buffer.from(cursor, 'base64url');
  raw[raw.length - 1] = (raw[raw.length - 1] ?? 0) ^ 1;
  return raw.toString('base64url');
};

describe('list cursors', () => {
  it('cursor leak: a service with no list policy learns no name from the cursor of a scan that ran out of budget', async () => {
    const tenant = await createTenant(t.app, root);
    const admin = secretsApi(t.app, tenant.adminToken);
    const names = Array.from({ length: 60 }, (_, i) => `HIDDEN_${String(i).padStart(2, '0')}_NAME`);
    const set = Object.fromEntries(names.map((n) => [n, { value: 'v' }]));
    expect((await admin.writeBundle('sandbox', 'sbx-1', { set })).statusCode).toBe(200);
    const svc = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      policies: [{ path: 'shared/elsewhere/*', capabilities: ['list'] }],
    });
    const api = secretsApi(t.app, svc.token);
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = expectOk(await api.list({ limit: 1, cursor }), 200, SecretPage);
      expect(page.items).toEqual([]);
      cursor = page.nextCursor ?? undefined;
      if (cursor) for (const n of names) expect(readable(cursor)).not.toContain(n);
      if (cursor) expect(readable(cursor)).not.toContain('sbx-1');
      pages++;
    } while (cursor && pages < 10);
    // The scan did run out of budget at least once (so a cursor was handed out over rows the service may not list).
    expect(pages).toBeGreaterThan(1);
  });

  it('cursor forgery: a crafted cursor pointing anywhere in the keyspace is 400 validation_failed, on every list', async () => {
    const tenant = await createTenant(t.app, root);
    const admin = secretsApi(t.app, tenant.adminToken);
    expect((await admin.put('sandbox/a/KEY', { value: 'v' })).statusCode).toBe(201);
    const forged = [
      ['/v1/secrets', b64json({ k: 'sandbox', o: 'a', n: 'A' })],
      ['/v1/audit', b64json({ s: 1_000_000 })],
      ['/v1/rotation/log', b64json({ s: 1_000_000 })],
    ] as const;
    for (const [url, cursor] of forged) {
      const res = await t.app.inject({ url: `${url}?cursor=${cursor}`, headers: bearer(tenant.adminToken) });
      expectError(res, 400, 'validation_failed');
    }
  });

  it('cursor forgery: a tampered cursor, or one carried to another tenant, identity or query, is 400', async () => {
    const tenant = await createTenant(t.app, root);
    const other = await createTenant(t.app, root);
    const admin = secretsApi(t.app, tenant.adminToken);
    const set = Object.fromEntries(['A', 'B', 'C'].map((n) => [n, { value: 'v' }]));
    expect((await admin.writeBundle('sandbox', 'a', { set })).statusCode).toBe(200);
    const secondAdmin = await createIdentity(t.app, tenant.adminToken, { role: 'admin' });

    const first = expectOk(await admin.list({ limit: 1, prefix: '' }), 200, SecretPage);
    const cursor = first.nextCursor as string;
    expect(cursor).toBeTruthy();
    // The genuine cursor continues, with any limit.
    const next = expectOk(await admin.list({ limit: 2, prefix: '', cursor }), 200, SecretPage);
    expect(next.items.map((i) => i.name)).toEqual(['B', 'C']);

    expectError(await admin.list({ limit: 1, prefix: '', cursor: tamper(cursor) }), 400, 'validation_failed');
    expectError(await admin.list({ limit: 1, prefix: 'B', cursor }), 400, 'validation_failed');
    expectError(await admin.list({ limit: 1, kind: 'sandbox', cursor }), 400, 'validation_failed');
    expectError(
      await secretsApi(t.app, secondAdmin.token).list({ limit: 1, prefix: '', cursor }),
      400,
      'validation_failed',
    );
    expectError(
      await secretsApi(t.app, other.adminToken).list({ limit: 1, prefix: '', cursor }),
      400,
      'validation_failed',
    );

    // The audit log's cursor: genuine continues, tampered or moved is refused.
    const audit = expectOk(
      await t.app.inject({ url: '/v1/audit?limit=1', headers: bearer(tenant.adminToken) }),
      200,
      AuditPage,
    );
    const auditCursor = audit.nextCursor as string;
    expect(auditCursor).toBeTruthy();
    expectOk(
      await t.app.inject({ url: `/v1/audit?limit=1&cursor=${auditCursor}`, headers: bearer(tenant.adminToken) }),
      200,
      AuditPage,
    );
    for (const [url, token] of [
      [`/v1/audit?limit=1&cursor=${tamper(auditCursor)}`, tenant.adminToken],
      [`/v1/audit?limit=1&outcome=denied&cursor=${auditCursor}`, tenant.adminToken],
      [`/v1/audit?limit=1&cursor=${auditCursor}`, other.adminToken],
      [`/v1/rotation/log?limit=1&cursor=${auditCursor}`, tenant.adminToken],
    ] as const) {
      expectError(await t.app.inject({ url, headers: bearer(token) }), 400, 'validation_failed');
    }
    expectOk(
      await t.app.inject({ url: '/v1/rotation/log?limit=1', headers: bearer(tenant.adminToken) }),
      200,
      RotationLog,
    );
  });

  it('cursor scope: a cursor of the deleted listing does not resume the live one, nor the reverse (400)', async () => {
    const tenant = await createTenant(t.app, root);
    const admin = secretsApi(t.app, tenant.adminToken);
    const set = Object.fromEntries(['A', 'B', 'C', 'D', 'E', 'F'].map((n) => [n, { value: 'v' }]));
    expect((await admin.writeBundle('sandbox', 'd', { set })).statusCode).toBe(200);
    for (const n of ['D', 'E', 'F']) expect((await admin.remove(`sandbox/d/${n}`)).statusCode).toBe(204);

    const live = expectOk(await admin.list({ limit: 1, owner: 'd' }), 200, SecretPage);
    const deleted = expectOk(await admin.list({ limit: 1, owner: 'd', deleted: 'true' }), 200, SecretPage);
    expect([live.items[0]?.name, deleted.items[0]?.name]).toEqual(['A', 'D']);
    const liveCursor = live.nextCursor as string;
    const deletedCursor = deleted.nextCursor as string;
    expect(liveCursor && deletedCursor).toBeTruthy();

    // Each resumes its own listing; deleted=false is the live listing, so its cursor is the live one's.
    const liveNext = expectOk(await admin.list({ limit: 5, owner: 'd', cursor: liveCursor }), 200, SecretPage);
    expect(liveNext.items.map((i) => i.name)).toEqual(['B', 'C']);
    const deletedNext = expectOk(
      await admin.list({ limit: 5, owner: 'd', deleted: 'true', cursor: deletedCursor }),
      200,
      SecretPage,
    );
    expect(deletedNext.items.map((i) => i.name)).toEqual(['E', 'F']);
    expectOk(await admin.list({ limit: 5, owner: 'd', deleted: 'false', cursor: liveCursor }), 200, SecretPage);

    // Carried across, either way: refused as a cursor this listing never returned.
    expectError(
      await admin.list({ limit: 5, owner: 'd', deleted: 'true', cursor: liveCursor }),
      400,
      'validation_failed',
    );
    expectError(await admin.list({ limit: 5, owner: 'd', cursor: deletedCursor }), 400, 'validation_failed');
    expectError(
      await admin.list({ limit: 5, owner: 'd', deleted: 'false', cursor: deletedCursor }),
      400,
      'validation_failed',
    );
  });
});
