import { AuditVerifyResult } from '@coffer/contracts';
import pg from 'pg';
import { describe, expect, inject, it } from 'vitest';
import { toAppendRow } from '../../apps/api/src/audit/audit.digest.ts';
import { pgErrorCode } from '../../apps/api/src/db/pg-errors.ts';
import { auditRowsOf, testLinkKey } from '../support/audit.ts';
import { createTenant } from '../support/factories.ts';
import { opsApi, ownerEvent } from '../support/ops.ts';
import { expectOk, secretsApi } from '../support/secrets.ts';
import { ownerSuite } from '../support/suite.ts';
import type { TestApp } from '../support/test-app.ts';

/**
 * A change's audit events are staged in its transaction and chained when it commits (migration 0011): the tenant's
 * chain head is locked for the commit alone, so other requests of the tenant are not held up by the rest of a
 * change's transaction, and the chain stays whole and in commit order.
 */

let t: TestApp;
let owner: pg.Client;
let root: string;
ownerSuite((s) => {
  ({ t, owner, root } = s);
});

/** A connection as the API's own query role, for transactions held open by hand. */
async function appClient(): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: inject('appDatabaseUrl') });
  await c.connect();
  return c;
}

const linkKeyOf = (tenantId: string): [string, Buffer] => {
  const k = testLinkKey(tenantId);
  return [k.id, k.key];
};

const events = (tenantId: string, resource: string) =>
  JSON.stringify([toAppendRow(ownerEvent(tenantId, { action: 'secrets.write', resource }))]);

describe('audit events of a change are chained at commit', () => {
  it("an open change's events do not hold the chain head; at commit they are chained after what came first", async () => {
    const tenant = await createTenant(t.app, root);
    const tid = tenant.tenant.id;
    const change = await appClient();
    const other = await appClient();
    try {
      await change.query('begin');
      await change.query('select coffer.audit_stage($1::uuid, $2::jsonb, $3, $4)', [
        tid,
        events(tid, 'staged/first'),
        ...linkKeyOf(tid),
      ]);

      // Another request of the same tenant appends meanwhile: it must not wait for the open change.
      await other.query(`set lock_timeout = '2s'`);
      await other.query('select coffer.audit_append($1::uuid, $2::jsonb, $3, $4)', [
        tid,
        events(tid, 'appended/meanwhile'),
        ...linkKeyOf(tid),
      ]);

      // Not chained yet, and invisible to everyone else.
      const before = await auditRowsOf(owner, tid);
      expect(before.map((r) => r.resource)).not.toContain('staged/first');
      expect((await owner.query('select count(*)::int as n from coffer.audit_staged')).rows[0].n).toBe(0);

      await change.query('commit');
      const after = await auditRowsOf(owner, tid);
      const seqOf = (resource: string) => Number(after.find((r) => r.resource === resource)?.seq);
      expect(seqOf('staged/first')).toBe(seqOf('appended/meanwhile') + 1);
      expect(Number(after.at(-1)?.seq)).toBe(after.length);
      // The staging row went with its transaction.
      expect((await owner.query('select count(*)::int as n from coffer.audit_staged')).rows[0].n).toBe(0);
    } finally {
      await change.end();
      await other.end();
    }
    expect(expectOk(await opsApi(t.app, tenant.adminToken).verify({}), 200, AuditVerifyResult).ok).toBe(true);
  });

  it('a change rolled back leaves neither its events nor a staging row', async () => {
    const tenant = await createTenant(t.app, root);
    const tid = tenant.tenant.id;
    const change = await appClient();
    try {
      await change.query('begin');
      await change.query('select coffer.audit_stage($1::uuid, $2::jsonb, $3, $4)', [
        tid,
        events(tid, 'staged/rolled-back'),
        ...linkKeyOf(tid),
      ]);
      await change.query('rollback');
    } finally {
      await change.end();
    }
    expect((await auditRowsOf(owner, tid)).map((r) => r.resource)).not.toContain('staged/rolled-back');
    expect((await owner.query('select count(*)::int as n from coffer.audit_staged')).rows[0].n).toBe(0);
  });

  it('if chaining fails at commit, the COMMIT fails with CF002 and nothing of the transaction remains', async () => {
    const tenant = await createTenant(t.app, root);
    const tid = tenant.tenant.id;
    const chainBefore = (await auditRowsOf(owner, tid)).length;
    const change = await appClient();
    try {
      await change.query('begin');
      await change.query('select coffer.audit_stage($1::uuid, $2::jsonb, $3, $4)', [
        tid,
        events(tid, 'staged/valid'),
        ...linkKeyOf(tid),
      ]);
      // An event without its time and outcome cannot be stored: audit_append fails, at commit.
      await change.query('select coffer.audit_stage($1::uuid, $2::jsonb, $3, $4)', [
        tid,
        '[{"action": "secrets.write"}]',
        ...linkKeyOf(tid),
      ]);
      const err = await change.query('commit').catch((e: unknown) => e);
      expect(pgErrorCode(err)).toBe('CF002');
    } finally {
      await change.end();
    }
    expect(await auditRowsOf(owner, tid)).toHaveLength(chainBefore);
    expect((await owner.query('select count(*)::int as n from coffer.audit_staged')).rows[0].n).toBe(0);
  });

  it('through the API: a write commits its event, chained, and leaves nothing staged', async () => {
    const tenant = await createTenant(t.app, root);
    const put = await secretsApi(t.app, tenant.adminToken).put('sandbox/app/DEFERRED', { value: 'v1' });
    expect(put.statusCode).toBe(201);
    const rows = await auditRowsOf(owner, tenant.tenant.id);
    expect(rows.at(-1)).toMatchObject({ action: 'secrets.write', resource: 'sandbox/app/DEFERRED' });
    expect((await owner.query('select count(*)::int as n from coffer.audit_staged')).rows[0].n).toBe(0);
  });
});
