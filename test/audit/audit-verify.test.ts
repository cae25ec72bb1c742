import { AuditPage, AuditVerifyResult } from '@coffer/contracts';
import pg from 'pg';
import { describe, expect, inject, it } from 'vitest';
import { eventDigest, keyedLink, toAppendRow } from '../../apps/api/src/audit/audit.digest.ts';
import { pgErrorCode } from '../../apps/api/src/db/pg-errors.ts';
import {
  type AuditRow,
  auditRowsOf,
  firstBrokenLink,
  keyedDigest,
  testLinkKey,
  toAuditEvent,
} from '../support/audit.ts';
import { createIdentity } from '../support/factories.ts';
import { appendEvents, asTamperer, type OpsApi, opsApi, ownerEvent, resetChain, signHead } from '../support/ops.ts';
import { expectOk } from '../support/secrets.ts';
import { ownerSuite, type TenantCtx, tenantCtx } from '../support/suite.ts';
import type { TestApp } from '../support/test-app.ts';

/** Tampering is done as the owner, on this file's own tenants only, with triggers off for that session only. */

let t: TestApp;
let owner: pg.Client;
let root: string;

ownerSuite((s) => {
  ({ t, owner, root } = s);
});

/** A tenant whose chain holds `writes` secret writes after its first event, and its rows (with ids). */
async function chainOf(writes = 8): Promise<TenantCtx & { rows: (AuditRow & { id: string })[] }> {
  const ctx = await tenantCtx(t, root);
  for (let i = 0; i < writes; i++)
    expect((await ctx.api.put(`sandbox/app/S_${i}`, { value: `v${i}` })).statusCode).toBe(201);
  return { ...ctx, rows: await rowsWithIds(ctx.tid) };
}

async function rowsWithIds(tid: string): Promise<(AuditRow & { id: string })[]> {
  const { rows } = await owner.query<AuditRow & { id: string }>(
    'select * from coffer.audit_events where tenant_id = $1 order by seq',
    [tid],
  );
  return rows;
}

const verify = async (ops: OpsApi, query: Record<string, string> = {}) =>
  expectOk(await ops.verify(query), 200, AuditVerifyResult);

const row = <T>(rows: T[], seq: number): T => {
  const r = rows[seq - 1];
  if (!r) throw new Error(`no row ${seq}`);
  return r;
};

describe('GET /v1/audit/verify finds tampering', () => {
  it('an untouched chain verifies; the verify itself is audited', async () => {
    const { tid, ops, rows } = await chainOf(5);
    const result = await verify(ops);
    // Every event, including this verify's own (written before the check).
    expect(result).toEqual({ ok: true, checked: rows.length + 1, checkpoints: 0 });
    const last = (await auditRowsOf(owner, tid)).at(-1);
    expect(last).toMatchObject({ action: 'audit.verify', outcome: 'allowed' });
  });

  it('an edited row is named, whether its content or its hash was changed', async () => {
    const a = await chainOf();
    const target = row(a.rows, 5);
    await asTamperer(owner, () =>
      owner.query(`update coffer.audit_events set resource = 'sandbox/app/INNOCENT' where tenant_id = $1 and seq = 5`, [
        a.tid,
      ]),
    );
    expect(await verify(a.ops)).toMatchObject({
      ok: false,
      reason: 'edited',
      firstBrokenId: Number(target.id),
      firstBrokenSeq: 5,
      checked: 4,
    });

    const b = await chainOf();
    await asTamperer(owner, () =>
      owner.query(
        `update coffer.audit_events set outcome = 'denied', actor_id = null where tenant_id = $1 and seq = 3`,
        [b.tid],
      ),
    );
    expect(await verify(b.ops)).toMatchObject({ ok: false, reason: 'edited', firstBrokenSeq: 3 });

    const c = await chainOf();
    await asTamperer(owner, () =>
      owner.query(`update coffer.audit_events set hash = sha256(hash) where tenant_id = $1 and seq = 6`, [c.tid]),
    );
    expect(await verify(c.ops)).toMatchObject({
      ok: false,
      reason: 'edited',
      firstBrokenId: Number(row(c.rows, 6).id),
      firstBrokenSeq: 6,
    });

    // Content edited and its digest recomputed, so the row looks whole on its own: still caught.
    const d = await chainOf();
    const victim = row(d.rows, 4);
    const forged = { ...toAuditEvent(victim), resource: 'sandbox/app/ELSEWHERE' };
    await asTamperer(owner, () =>
      owner.query(`update coffer.audit_events set resource = $3, digest = $4 where tenant_id = $1 and seq = $2`, [
        d.tid,
        4,
        forged.resource,
        eventDigest(forged),
      ]),
    );
    expect(await verify(d.ops)).toMatchObject({ ok: false, reason: 'edited', firstBrokenSeq: 4 });
  });

  it('a deleted row is named by the gap it leaves, and a deleted tail is found against the head', async () => {
    const a = await chainOf();
    await asTamperer(owner, () =>
      owner.query('delete from coffer.audit_events where tenant_id = $1 and seq = 4', [a.tid]),
    );
    const gap = await verify(a.ops);
    expect(gap).toMatchObject({
      ok: false,
      reason: 'deleted',
      firstBrokenSeq: 5,
      firstBrokenId: Number(row(a.rows, 5).id),
    });
    expect(gap.message).toContain('seq 4');

    const b = await chainOf();
    const last = b.rows.length;
    // The last two rows go; the head still says where the chain ended, and the next event links to it.
    await asTamperer(owner, () =>
      owner.query('delete from coffer.audit_events where tenant_id = $1 and seq >= $2', [b.tid, last - 1]),
    );
    const tail = await verify(b.ops);
    expect(tail).toMatchObject({ ok: false, reason: 'deleted', firstBrokenSeq: last + 1 });
    expect(tail.message).toContain(`seq ${last - 1}..${last}`);

    // The tail removed and the head rolled back to match: only a signed checkpoint past the new end shows it.
    const c = await chainOf();
    const cHead = c.rows.at(-1) as AuditRow;
    await t.app.jobs.audit.sign(c.tid, Number(cHead.seq), cHead.hash, 'periodic');
    const keep = row(c.rows, c.rows.length - 2);
    await asTamperer(owner, async () => {
      await owner.query('delete from coffer.audit_events where tenant_id = $1 and seq > $2', [c.tid, keep.seq]);
      await owner.query('update coffer.audit_heads set seq = $2, hash = $3 where tenant_id = $1', [
        c.tid,
        keep.seq,
        keep.hash,
      ]);
      // Even with the head re-signed (by a holder of the master key).
      await signHead(owner, c.tid);
    });
    expect(await verify(c.ops)).toMatchObject({ ok: false, reason: 'truncated' });
  });

  it('reordered rows are named', async () => {
    const a = await chainOf();
    const moved = row(a.rows, 6);
    await asTamperer(owner, async () => {
      await owner.query('update coffer.audit_events set seq = -1 where tenant_id = $1 and seq = 5', [a.tid]);
      await owner.query('update coffer.audit_events set seq = 5 where tenant_id = $1 and seq = 6', [a.tid]);
      await owner.query('update coffer.audit_events set seq = 6 where tenant_id = $1 and seq = -1', [a.tid]);
    });
    expect(await verify(a.ops)).toMatchObject({
      ok: false,
      reason: 'reordered',
      firstBrokenSeq: 5,
      firstBrokenId: Number(moved.id),
      checked: 4,
    });
  });

  it('an inserted row is named, in the middle or past the head', async () => {
    const a = await chainOf();
    const k = 4;
    const prev = row(a.rows, k);
    const fake = ownerEvent(a.tid, {
      occurredAt: new Date(prev.occurred_at.getTime() + 1),
      action: 'secrets.read',
      resource: 'sandbox/app/ALIBI',
      actorId: prev.actor_id,
      actorName: prev.actor_name,
    });
    // Forged with the tenant's link key (as only a holder of the master key could): well-formed, yet out of place.
    const key = testLinkKey(a.tid);
    const digest = keyedDigest(fake);
    const hash = keyedLink(key.key, prev.hash, k + 1, digest);
    const inserted = await asTamperer(owner, async () => {
      // Make room after row k, then insert a well-formed event that links to row k.
      await owner.query('update coffer.audit_events set seq = -seq where tenant_id = $1 and seq > $2', [a.tid, k]);
      await owner.query('update coffer.audit_events set seq = -seq + 1 where tenant_id = $1 and seq < 0', [a.tid]);
      await owner.query('update coffer.audit_heads set seq = seq + 1 where tenant_id = $1', [a.tid]);
      await signHead(owner, a.tid);
      const r = toAppendRow(fake);
      const { rows } = await owner.query<{ id: string }>(
        `insert into coffer.audit_events (tenant_id, seq, occurred_at, actor_id, actor_name, action, resource, version,
           outcome, error_code, request_id, source_ip, user_agent, fingerprint, details, digest, prev_hash, hash,
           link_key_id)
         values ($1, $2, $3, $4, $5, $6, $7, null, 'allowed', null, null, null, null, null, null, $8, $9, $10, $11)
         returning id`,
        [a.tid, k + 1, r.occurred_at, r.actor_id, r.actor_name, r.action, r.resource, digest, prev.hash, hash, key.id],
      );
      return rows[0]?.id;
    });
    expect(await verify(a.ops)).toMatchObject({
      ok: false,
      reason: 'inserted',
      firstBrokenSeq: k + 1,
      firstBrokenId: Number(inserted),
    });

    // Past the head: a row slipped in beyond where the chain ends is not part of it.
    const b = await chainOf();
    const tail = b.rows.at(-1) as AuditRow;
    const extra = ownerEvent(b.tid, { action: 'secrets.write', resource: 'sandbox/app/LATE' });
    const extraKey = testLinkKey(b.tid);
    const extraDigest = keyedDigest(extra);
    // One seq past the next free one: the verify's own event takes the next free seq.
    const seq = b.rows.length + 2;
    const extraId = await asTamperer(owner, async () => {
      const r = toAppendRow(extra);
      const { rows } = await owner.query<{ id: string }>(
        `insert into coffer.audit_events (tenant_id, seq, occurred_at, actor_name, action, resource, outcome, digest,
           prev_hash, hash, link_key_id) values ($1, $2, $3, $4, $5, $6, 'allowed', $7, $8, $9, $10) returning id`,
        [
          b.tid,
          seq,
          r.occurred_at,
          r.actor_name,
          r.action,
          r.resource,
          extraDigest,
          tail.hash,
          keyedLink(extraKey.key, tail.hash, seq, extraDigest),
          extraKey.id,
        ],
      );
      return rows[0]?.id;
    });
    expect(await verify(b.ops)).toMatchObject({
      ok: false,
      reason: 'inserted',
      firstBrokenSeq: seq,
      firstBrokenId: Number(extraId),
    });
  });

  it('a time range is verified on its own: tampering outside it does not show, inside it does', async () => {
    const a = await chainOf(10);
    const { ops, tid, rows } = a;
    await asTamperer(owner, () =>
      owner.query(`update coffer.audit_events set resource = 'x' where tenant_id = $1 and seq = 9`, [tid]),
    );
    const r = (seq: number) => row(rows, seq).occurred_at;
    // Rows 3..6 only.
    const inside = await verify(ops, { from: r(3).toISOString(), to: new Date(r(6).getTime() + 1).toISOString() });
    expect(inside).toMatchObject({ ok: true });
    expect(inside.checked).toBeGreaterThanOrEqual(4);
    const covering = await verify(ops, { from: r(7).toISOString() });
    expect(covering).toMatchObject({ ok: false, reason: 'edited', firstBrokenSeq: 9 });
    expect(await verify(ops)).toMatchObject({ ok: false, reason: 'edited', firstBrokenSeq: 9 });
  });

  it('a chain rewritten consistently from an edited row is caught by its signed checkpoint', async () => {
    const a = await chainOf();
    const head = a.rows.at(-1) as AuditRow;
    await t.app.jobs.audit.sign(a.tid, Number(head.seq), head.hash, 'periodic');
    expect(await verify(a.ops)).toMatchObject({ ok: true, checkpoints: 1 });

    // An attacker with the master key edits row 3 and recomputes every digest and link after it, and the head: the
    // chain alone holds.
    const rows = await rowsWithIds(a.tid);
    const key = testLinkKey(a.tid).key;
    await asTamperer(owner, async () => {
      let prev = row(rows, 2).hash;
      for (const r of rows.slice(2)) {
        const seq = Number(r.seq);
        const event = seq === 3 ? { ...toAuditEvent(r), resource: 'sandbox/app/REWRITTEN' } : toAuditEvent(r);
        const digest = keyedDigest(event);
        const hash = keyedLink(key, prev, seq, digest);
        await owner.query(
          'update coffer.audit_events set resource = $3, digest = $4, prev_hash = $5, hash = $6 where tenant_id = $1 and seq = $2',
          [a.tid, seq, event.resource, digest, prev, hash],
        );
        prev = hash;
      }
      await owner.query('update coffer.audit_heads set hash = $2 where tenant_id = $1', [a.tid, prev]);
      await signHead(owner, a.tid);
    });
    expect(firstBrokenLink(await auditRowsOf(owner, a.tid))).toBeNull();
    expect(await verify(a.ops)).toMatchObject({
      ok: false,
      reason: 'checkpoint_mismatch',
      firstBrokenSeq: Number(head.seq),
    });

    // A checkpoint whose signature was changed is refused as such.
    const b = await chainOf();
    const bHead = b.rows.at(-1) as AuditRow;
    await t.app.jobs.audit.sign(b.tid, Number(bHead.seq), bHead.hash, 'periodic');
    await asTamperer(owner, () =>
      owner.query('update coffer.audit_checkpoints set mac = sha256(mac) where tenant_id = $1', [b.tid]),
    );
    expect(await verify(b.ops)).toMatchObject({
      ok: false,
      reason: 'bad_checkpoint',
      firstBrokenSeq: Number(bHead.seq),
    });
  });
});

describe('the chain under concurrent writers', () => {
  it('stays whole with 50 concurrent writers in 5 tenants', async () => {
    const tenants = await Promise.all(Array.from({ length: 5 }, () => tenantCtx(t, root)));
    const before = new Map<string, number>();
    for (const c of tenants) before.set(c.tid, (await auditRowsOf(owner, c.tid)).length);
    // Ten writers per tenant, each writing and reading its own secret three times.
    await Promise.all(
      tenants.flatMap((c) =>
        Array.from({ length: 10 }, async (_, w) => {
          for (let i = 0; i < 3; i++) {
            expect((await c.api.put(`sandbox/w/W_${w}`, { value: `v${i}` })).statusCode).toBeLessThan(300);
            expect((await c.api.get(`sandbox/w/W_${w}`)).statusCode).toBe(200);
          }
        }),
      ),
    );
    for (const c of tenants) {
      const rows = await auditRowsOf(owner, c.tid);
      expect(rows).toHaveLength((before.get(c.tid) ?? 0) + 60);
      expect(rows.map((r) => Number(r.seq))).toEqual(rows.map((_, i) => i + 1));
      expect(firstBrokenLink(rows)).toBeNull();
      const writes = rows.filter((r) => r.action === 'secrets.write');
      const reads = rows.filter((r) => r.action === 'secrets.read');
      expect([writes.length, reads.length]).toEqual([30, 30]);
      expect(await verify(c.ops)).toMatchObject({ ok: true, checked: rows.length + 1 });
    }
  });
});

describe('retention', () => {
  const DAY = 86_400_000;

  /** A tenant whose history starts `ageDays` ago: `old` events then, `recent` now (owner-appended, valid chain). */
  async function tenantWithHistory(old: number, recent: number, ageDays = 60) {
    const ctx = await tenantCtx(t, root);
    await resetChain(owner, ctx.tid);
    const start = Date.now() - ageDays * DAY;
    await appendEvents(
      owner,
      ctx.tid,
      Array.from({ length: old }, (_, i) =>
        ownerEvent(ctx.tid, {
          occurredAt: new Date(start + i * 1000),
          action: 'secrets.read',
          resource: `sandbox/old/S_${i}`,
        }),
      ),
    );
    await appendEvents(
      owner,
      ctx.tid,
      Array.from({ length: recent }, (_, i) =>
        ownerEvent(ctx.tid, { action: 'secrets.write', resource: `sandbox/new/S_${i}` }),
      ),
    );
    return ctx;
  }

  async function checkpointsOf(tid: string) {
    const { rows } = await owner.query<{ seq: string; kind: string; hash: Buffer }>(
      'select seq, kind, hash from coffer.audit_checkpoints where tenant_id = $1 order by seq',
      [tid],
    );
    return rows;
  }

  it('drops events past the retention in batches behind a signed checkpoint, and the rest still verifies', async () => {
    const OLD = 6_000;
    const { tid, ops } = await tenantWithHistory(OLD, 20);
    expect(await verify(ops)).toMatchObject({ ok: true, checked: OLD + 21 });
    const cut = (await rowsWithIds(tid))[OLD - 1] as AuditRow;

    // Within the default 400 days, nothing goes.
    expect(await t.app.jobs.audit.retainTenant(tid)).toBe(0);
    expect(await checkpointsOf(tid)).toEqual([]);

    await owner.query('insert into coffer.audit_retention (tenant_id, days) values ($1, 30)', [tid]);
    expect(await t.app.jobs.audit.retainTenant(tid)).toBe(OLD);
    const checkpoints = await checkpointsOf(tid);
    expect(checkpoints).toMatchObject([{ seq: String(OLD), kind: 'retention' }]);
    expect(checkpoints[0]?.hash.equals(cut.hash)).toBe(true);
    const remaining = await rowsWithIds(tid);
    expect(Number(remaining[0]?.seq)).toBe(OLD + 1);
    expect(remaining.every((r) => r.occurred_at.getTime() > Date.now() - 30 * DAY)).toBe(true);

    // (The checkpoint anchors the first remaining event; `checkpoints` counts only those met inside the chain.)
    const result = await verify(ops);
    expect(result).toMatchObject({ ok: true, checked: remaining.length + 1 });
    // Query and export start where the chain now starts.
    const oldest = expectOk(await ops.audit({ limit: 1000 }), 200, AuditPage).items.at(-1);
    expect(oldest?.seq).toBe(OLD + 1);
    const firstLine = (await ops.exportAudit()).body.split('\n')[0] ?? '';
    expect((JSON.parse(firstLine) as { seq: number }).seq).toBe(OLD + 1);
    // Nothing more to drop.
    expect(await t.app.jobs.audit.retainTenant(tid)).toBe(0);
    expect(await checkpointsOf(tid)).toHaveLength(1);
    expect(await verify(ops)).toMatchObject({ ok: true });

    // The checkpoint is what keeps the cut verifiable: without it the missing prefix shows; a forged one is refused.
    const saved = await owner.query('select * from coffer.audit_checkpoints where tenant_id = $1', [tid]);
    await asTamperer(owner, () => owner.query('delete from coffer.audit_checkpoints where tenant_id = $1', [tid]));
    expect(await verify(ops)).toMatchObject({ ok: false, reason: 'deleted', firstBrokenSeq: OLD + 1 });
    const cp = saved.rows[0] as { seq: string; hash: Buffer; mac: Buffer; master_key_id: string; kind: string };
    await owner.query(
      'insert into coffer.audit_checkpoints (tenant_id, seq, hash, mac, master_key_id, kind) values ($1, $2, $3, $4, $5, $6)',
      [tid, cp.seq, cp.hash, Buffer.alloc(32, 7), cp.master_key_id, cp.kind],
    );
    expect(await verify(ops)).toMatchObject({ ok: false, reason: 'bad_checkpoint' });
    await asTamperer(owner, () =>
      owner.query('update coffer.audit_checkpoints set mac = $2 where tenant_id = $1', [tid, cp.mac]),
    );
    expect(await verify(ops)).toMatchObject({ ok: true });
  });

  // Regression: a range starting at the cut anchored on the deleted previous event and ignored the checkpoint there.
  it('after retention, a verify over a time range that reaches the cut still succeeds', async () => {
    const { tid, ops } = await tenantWithHistory(50, 10);
    await owner.query('insert into coffer.audit_retention (tenant_id, days) values ($1, 30)', [tid]);
    expect(await t.app.jobs.audit.retainTenant(tid)).toBe(50);
    expect(await verify(ops)).toMatchObject({ ok: true });
    const since = new Date(Date.now() - 365 * DAY).toISOString();
    expect(await verify(ops, { from: since })).toMatchObject({ ok: true });
  });

  it('the app role cannot delete audit rows, and the purge function drops only past a checkpoint and the retention', async () => {
    const { tid } = await tenantWithHistory(30, 5);
    await owner.query('insert into coffer.audit_retention (tenant_id, days) values ($1, 30)', [tid]);
    const app = new pg.Client({ connectionString: inject('appDatabaseUrl') });
    await app.connect();
    try {
      const attempt = async (sql: string, params: unknown[]) => {
        try {
          await app.query('begin');
          await app.query("select set_config('app.tenant_id', $1, true)", [tid]);
          await app.query(sql, params);
          return 'ok';
        } catch (err) {
          return pgErrorCode(err) ?? 'error';
        } finally {
          await app.query('rollback');
        }
      };
      expect(await attempt('delete from coffer.audit_events where tenant_id = $1', [tid])).toBe('42501');
      expect(await attempt(`update coffer.audit_events set resource = 'x' where tenant_id = $1`, [tid])).toBe('42501');
      // No checkpoint covers the cut yet: refused.
      expect(await attempt('select coffer.audit_retention_purge($1, $2, 1000)', [tid, 30])).toBe('55000');
      expect((await rowsWithIds(tid)).length).toBe(35);

      // A checkpoint at the head, and a request to drop everything: only what is past the retention goes.
      const head = (await rowsWithIds(tid)).at(-1) as AuditRow;
      await t.app.jobs.audit.sign(tid, Number(head.seq), head.hash, 'verify');
      const { rows } = await app.query<{ n: string }>('select coffer.audit_retention_purge($1, $2, 1000) as n', [
        tid,
        Number(head.seq),
      ]);
      expect(rows[0]?.n).toBe('30');
      const left = await rowsWithIds(tid);
      expect(left.map((r) => Number(r.seq))).toEqual([31, 32, 33, 34, 35]);
    } finally {
      await app.end();
    }
  });
});

describe('who may verify', () => {
  it('admins and auditors verify their own tenant; services may not', async () => {
    const { tenant, ops } = await chainOf(2);
    const auditor = await createIdentity(t.app, tenant.adminToken, { role: 'auditor' });
    const svc = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      policies: [{ path: '**', capabilities: ['read'] }],
    });
    expect(await verify(opsApi(t.app, auditor.token))).toMatchObject({ ok: true });
    expect((await opsApi(t.app, svc.token).verify()).statusCode).toBe(403);
    expect((await opsApi(t.app, null).verify()).statusCode).toBe(401);
    expect(await verify(ops)).toMatchObject({ ok: true });
  });
});
