import { randomBytes } from 'node:crypto';
import { AuditSummary, AuditVerifyResult } from '@coffer/contracts';
import type pg from 'pg';
import { describe, expect, inject, it } from 'vitest';
import { eventDigest, linkHash } from '../../apps/api/src/audit/audit.digest.ts';
import { sqlState, withClient } from '../support/db.ts';
import { createTenant } from '../support/factories.ts';
import { appendEvents, asTamperer, type OpsApi, opsApi, ownerEvent, resetChain } from '../support/ops.ts';
import { expectOk, secretsApi } from '../support/secrets.ts';
import { ownerSuite } from '../support/suite.ts';
import type { TestApp } from '../support/test-app.ts';

/**
 * Issue 16, findings 12-14 and 16a: attacks on the audit log by whoever holds the database's credentials, run as
 * they would run them, over a direct connection as `coffer_app` (what a compromised API host holds) or as the owner
 * (a database administrator). Each test names its attack and fails where the attack succeeds.
 */

let t: TestApp;
let owner: pg.Client;
let root: string;

ownerSuite((s) => {
  ({ t, owner, root } = s);
});

const verify = async (ops: OpsApi) => expectOk(await ops.verify(), 200, AuditVerifyResult);

/** A tenant with a few events of its own, and its admin's ops client. */
async function tenantWithChain() {
  const tenant = await createTenant(t.app, root);
  const api = secretsApi(t.app, tenant.adminToken);
  for (let i = 0; i < 3; i++)
    expect((await api.put(`shared/payments/KEY_${i}`, { value: `v${i}` })).statusCode).toBe(201);
  return { tid: tenant.tenant.id, ops: opsApi(t.app, tenant.adminToken) };
}

const DAY = 86_400_000;

/** A tenant whose chain starts `ageDays` ago: `old` events then, and a few of today. */
async function tenantWithHistory(old: number, ageDays: number) {
  const tenant = await createTenant(t.app, root);
  const tid = tenant.tenant.id;
  await resetChain(owner, tid);
  const start = Date.now() - ageDays * DAY;
  await appendEvents(
    owner,
    tid,
    Array.from({ length: old }, (_, i) =>
      ownerEvent(tid, {
        occurredAt: new Date(start + i * 1000),
        action: 'secrets.read',
        resource: `sandbox/old/S_${i}`,
      }),
    ),
  );
  await appendEvents(owner, tid, [ownerEvent(tid, { action: 'secrets.write', resource: 'sandbox/new/S' })]);
  return { tid, tenant, ops: opsApi(t.app, tenant.adminToken) };
}

/** The forged read of the issue, chained the way audit_append chained events before links were keyed. */
async function forgedRead(db: pg.Client, tid: string) {
  const { rows } = await db.query<{ seq: string; hash: Buffer }>(
    'select seq, hash from coffer.audit_heads where tenant_id = $1',
    [tid],
  );
  const head = rows[0];
  if (!head) throw new Error('no head');
  const seq = Number(head.seq) + 1;
  const event = ownerEvent(tid, {
    action: 'secrets.read',
    actorName: 'admin',
    resource: 'shared/payments/STRIPE_KEY',
    version: 1,
    sourceIp: '203.0.113.66',
  });
  const digest = eventDigest(event);
  return { seq, event, digest, prev: head.hash, hash: linkHash(head.hash, seq, digest) };
}

async function insertForged(db: pg.Client, tid: string, f: Awaited<ReturnType<typeof forgedRead>>) {
  await db.query(
    `insert into coffer.audit_events (tenant_id, seq, occurred_at, actor_name, action, resource, version, outcome,
       source_ip, digest, prev_hash, hash)
     values ($1, $2, $3, $4, $5, $6, $7, 'allowed', $8, $9, $10, $11)`,
    [
      tid,
      f.seq,
      f.event.occurredAt,
      f.event.actorName,
      f.event.action,
      f.event.resource,
      f.event.version,
      f.event.sourceIp,
      f.digest,
      f.prev,
      f.hash,
    ],
  );
  await db.query('update coffer.audit_heads set seq = $2, hash = $3 where tenant_id = $1', [tid, f.seq, f.hash]);
}

describe('finding 12: fabricated audit events', () => {
  it('coffer_app inserts a forged "admin read STRIPE_KEY from 203.0.113.66" and moves the head: permission denied', async () => {
    const { tid, ops } = await tenantWithChain();
    const refused = await withClient(inject('appDatabaseUrl'), async (app) => {
      await app.query('begin');
      await app.query(`select set_config('app.tenant_id', $1, true)`, [tid]);
      const f = await forgedRead(app, tid);
      const result = await sqlState(insertForged(app, tid, f));
      await app.query('rollback');
      // Nor the head on its own, nor any way around the append function.
      await app.query('begin');
      await app.query(`select set_config('app.tenant_id', $1, true)`, [tid]);
      const head = await sqlState(app.query('update coffer.audit_heads set seq = seq + 1 where tenant_id = $1', [tid]));
      await app.query('rollback');
      return { insert: result, head };
    });
    expect(refused.insert?.code).toBe('42501');
    expect(refused.head?.code).toBe('42501');
    expect(await verify(ops)).toMatchObject({ ok: true });
    const summary = expectOk(await ops.summary(), 200, AuditSummary);
    expect(JSON.stringify(summary)).not.toContain('STRIPE_KEY');
  });

  it('the owner inserts the forged read bypassing the API, with a well-formed link: verify names it', async () => {
    const { tid, ops } = await tenantWithChain();
    const f = await forgedRead(owner, tid);
    await asTamperer(owner, () => insertForged(owner, tid, f));
    expect(await verify(ops)).toMatchObject({ ok: false, reason: 'edited', firstBrokenSeq: f.seq });
  });

  it('coffer_app appends through audit_append without the link key: its events do not verify', async () => {
    const { tid, ops } = await tenantWithChain();
    const f = await forgedRead(owner, tid);
    const row = {
      occurred_at: f.event.occurredAt.toISOString(),
      actor_name: 'admin',
      action: 'secrets.read',
      resource: 'shared/payments/STRIPE_KEY',
      outcome: 'allowed',
      source_ip: '203.0.113.66',
      digest: f.digest.toString('hex'),
    };
    await withClient(inject('appDatabaseUrl'), (app) =>
      app.query('select coffer.audit_append($1::uuid, $2::jsonb, $3, $4)', [
        tid,
        JSON.stringify([row]),
        inject('masterKeys').split(':')[0],
        randomBytes(32),
      ]),
    );
    expect(await verify(ops)).toMatchObject({ ok: false, reason: 'edited', firstBrokenSeq: f.seq });
  });
});

describe('finding 13: erasing history through retention', () => {
  it('coffer_app sets the audit retention to 1 day to erase history: refused, and the next retention run keeps it', async () => {
    const { tid, ops } = await tenantWithHistory(20, 10);
    const attempts = await withClient(inject('appDatabaseUrl'), async (app) => {
      const inTenant = async (sql: string) => {
        await app.query('begin');
        await app.query(`select set_config('app.tenant_id', $1, true)`, [tid]);
        const r = await sqlState(app.query(sql, [tid]));
        await app.query('rollback');
        return r;
      };
      return {
        column: await inTenant('update coffer.tenants set audit_retention_days = 1 where id = $1'),
        table: await inTenant(
          'insert into coffer.audit_retention (tenant_id, days) values ($1, 1) on conflict (tenant_id) do update set days = 1',
        ),
        // The function the API uses holds the bounds, whoever calls it.
        fn: await inTenant(`select coffer.audit_set_retention($1, 1, '[]'::jsonb, 'k', '\\x00'::bytea)`),
      };
    });
    expect(attempts.column).not.toBeNull();
    expect(attempts.table?.code).toBe('42501');
    expect(attempts.fn).not.toBeNull();
    expect(await t.app.jobs.audit.retainTenant(tid)).toBe(0);
    expect(await verify(ops)).toMatchObject({ ok: true, checked: 20 + 1 + 1 });
  });

  it("PUT /v1/tenants/:id/audit-retention is the platform admin's, within 30..3650 days, and audited in the platform chain", async () => {
    const { tid, ops } = await tenantWithHistory(20, 60);
    const put = (days: unknown, token = root) =>
      t.app.inject({
        method: 'PUT',
        url: `/v1/tenants/${tid}/audit-retention`,
        headers: { authorization: `Bearer ${token}` },
        payload: { days },
      });
    for (const days of [1, 29, 3651, 30.5, '30']) expect((await put(days)).statusCode, String(days)).toBe(400);
    const tenant = await createTenant(t.app, root);
    expect((await put(30, tenant.adminToken)).statusCode).toBe(403);
    const res = await put(30);
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ tenantId: tid, days: 30, previousDays: 400 });
    const { rows } = await owner.query<{ resource: string; details: { days: number } }>(
      `select resource, details from coffer.audit_events where action = 'tenants.audit_retention' and request_id = $1`,
      [res.headers['x-request-id']],
    );
    expect(rows).toEqual([{ resource: `tenants/${tid}`, details: { days: 30 } }]);
    // Now, and only now, the history past 30 days goes, behind a checkpoint; the rest verifies.
    expect(await t.app.jobs.audit.retainTenant(tid)).toBe(20);
    expect(await verify(ops)).toMatchObject({ ok: true });
  });
});

describe('finding 16a: one tenant takes down the others', () => {
  it("the owner rewinds one tenant's head: concurrent reads of a healthy tenant still all answer 200", async () => {
    const healthy = await createTenant(t.app, root);
    const broken = await createTenant(t.app, root);
    const healthyApi = secretsApi(t.app, healthy.adminToken);
    const brokenApi = secretsApi(t.app, broken.adminToken);
    expect((await healthyApi.put('shared/app/KEY', { value: 'h' })).statusCode).toBe(201);
    expect((await brokenApi.put('shared/app/KEY', { value: 'b' })).statusCode).toBe(201);
    // One seq back: the next event of the broken tenant collides with the one already at that seq.
    await owner.query('update coffer.audit_heads set seq = seq - 1 where tenant_id = $1', [broken.tenant.id]);

    // Interleaved, so that the reads of both tenants share group commits.
    const healthyReads: ReturnType<typeof healthyApi.get>[] = [];
    const brokenReads: ReturnType<typeof brokenApi.get>[] = [];
    for (let i = 0; i < 25; i++) {
      healthyReads.push(healthyApi.get('shared/app/KEY'));
      brokenReads.push(brokenApi.get('shared/app/KEY'));
    }
    const healthyStatuses = (await Promise.all(healthyReads)).map((r) => r.statusCode);
    const brokenStatuses = (await Promise.all(brokenReads)).map((r) => r.statusCode);
    expect(brokenStatuses).toEqual(Array(25).fill(503));
    expect(healthyStatuses).toEqual(Array(25).fill(200));
  });
});
