import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AuditSummary, AuditVerifyResult } from '@coffer/contracts';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { eventDigest, keyedLink, linkHash } from '../../apps/api/src/audit/audit.digest.ts';
import { type AuditRow, keyedDigest, testLinkKey, toAuditEvent } from '../support/audit.ts';
import { sqlState, withClient } from '../support/db.ts';
import { createTenant, rootToken } from '../support/factories.ts';
import { appendEvents, asTamperer, type OpsApi, opsApi, ownerEvent, resetChain, signHead } from '../support/ops.ts';
import { expectOk, secretsApi } from '../support/secrets.ts';
import { ownerSuite } from '../support/suite.ts';
import { createTestApp, type TestApp } from '../support/test-app.ts';

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
    // The head it moved is unsigned (coffer.audit_append refuses to chain onto it), and the row's link is unkeyed.
    expect(await verify(ops)).toMatchObject({ ok: false, reason: 'bad_head', firstBrokenSeq: f.seq });
    // Even with the head re-signed by a holder of the master key, the forged row itself does not verify.
    await signHead(owner, tid);
    expect(await verify(ops)).toMatchObject({ ok: false, reason: 'edited', firstBrokenSeq: f.seq });
  });

  it('coffer_app calls audit_append with a key of its own: refused, the chain still verifies', async () => {
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
    const refused = await withClient(inject('appDatabaseUrl'), (app) =>
      sqlState(
        app.query('select coffer.audit_append($1::uuid, $2::jsonb, $3, $4)', [
          tid,
          JSON.stringify([row]),
          inject('masterKeys').split(':')[0],
          randomBytes(32),
        ]),
      ),
    );
    // The signed head does not check out under that key, so nothing is chained (were it, its link would not verify).
    expect(refused?.code).toBe('XX001');
    expect(await verify(ops)).toMatchObject({ ok: true });
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

describe('finding 14: the owner rewrites the chain', () => {
  let w: TestApp;
  let dir: string;
  let witnessFile: string;
  let wRoot: string;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'coffer-witness-'));
    witnessFile = path.join(dir, 'witness.jsonl');
    w = await createTestApp({ COFFER_AUDIT_WITNESS_FILE: witnessFile, COFFER_AUDIT_CHECKPOINT_MAX_AGE_S: '3600' });
    wRoot = await rootToken(w.app);
  });
  afterAll(async () => {
    await w?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const head = async (tid: string) => {
    const { rows } = await owner.query<{ seq: string; hash: Buffer; key_id: string; signed_at: Date; mac: Buffer }>(
      'select seq, hash, key_id, signed_at, mac from coffer.audit_heads where tenant_id = $1',
      [tid],
    );
    if (!rows[0]) throw new Error('no head');
    return rows[0];
  };
  const rowAt = async (tid: string, seq: number) => {
    const { rows } = await owner.query<{ hash: Buffer }>(
      'select hash from coffer.audit_events where tenant_id = $1 and seq = $2',
      [tid, seq],
    );
    if (!rows[0]) throw new Error(`no row ${seq}`);
    return rows[0];
  };
  /** A tenant of the witnessed app with some writes, and a checkpoint (exported to the witness) at its head. */
  async function witnessedChain(writes = 4) {
    const tenant = await createTenant(w.app, wRoot);
    const tid = tenant.tenant.id;
    const api = secretsApi(w.app, tenant.adminToken);
    for (let i = 0; i < writes; i++)
      expect((await api.put(`shared/app/K_${i}`, { value: `v${i}` })).statusCode).toBe(201);
    const h = await head(tid);
    await w.app.jobs.audit.sign(tid, Number(h.seq), h.hash, 'periodic');
    return { tid, api, ops: opsApi(w.app, tenant.adminToken), checkpointSeq: Number(h.seq) };
  }
  const verifyW = async (ops: OpsApi) => expectOk(await ops.verify(), 200, AuditVerifyResult);

  it('the owner truncates the tail and rewinds the head onto the last event kept: verify names the head', async () => {
    const { tid, ops, api } = await witnessedChain();
    await api.put('shared/app/LATER', { value: 'x' });
    const keep = Number((await head(tid)).seq) - 3;
    const kept = await rowAt(tid, keep);
    await asTamperer(owner, async () => {
      await owner.query('delete from coffer.audit_events where tenant_id = $1 and seq > $2', [tid, keep]);
      await owner.query('update coffer.audit_heads set seq = $2, hash = $3 where tenant_id = $1', [
        tid,
        keep,
        kept.hash,
      ]);
    });
    expect(await verifyW(ops)).toMatchObject({ ok: false, reason: 'bad_head', firstBrokenSeq: keep });
  });

  it('the owner rolls the database back (events, the signed head and checkpoints as they were): the witness catches it', async () => {
    const { tid, ops, api, checkpointSeq } = await witnessedChain();
    const then = await head(tid);
    for (let i = 0; i < 3; i++) await api.put(`shared/app/NEW_${i}`, { value: 'x' });
    const now = await head(tid);
    await w.app.jobs.audit.sign(tid, Number(now.seq), now.hash, 'periodic');
    const lines = readFileSync(witnessFile, 'utf8')
      .split('\n')
      .filter((l) => l.includes(tid));
    expect(lines.map((l) => (JSON.parse(l) as { seq: number }).seq)).toEqual([checkpointSeq, Number(now.seq)]);

    await asTamperer(owner, async () => {
      await owner.query('delete from coffer.audit_events where tenant_id = $1 and seq > $2', [tid, then.seq]);
      await owner.query('delete from coffer.audit_checkpoints where tenant_id = $1 and seq > $2', [tid, then.seq]);
      await owner.query(
        'update coffer.audit_heads set seq = $2, hash = $3, key_id = $4, signed_at = $5, mac = $6 where tenant_id = $1',
        [tid, then.seq, then.hash, then.key_id, then.signed_at, then.mac],
      );
    });
    expect(await verifyW(ops)).toMatchObject({ ok: false, reason: 'rolled_back' });
  });

  it("the owner deletes a whole tenant's chain (events, head and checkpoints): the witness catches it", async () => {
    const { tid, ops } = await witnessedChain();
    await asTamperer(owner, async () => {
      await owner.query('delete from coffer.audit_events where tenant_id = $1', [tid]);
      await owner.query('delete from coffer.audit_checkpoints where tenant_id = $1', [tid]);
      await owner.query('delete from coffer.audit_heads where tenant_id = $1', [tid]);
    });
    expect(await verifyW(ops)).toMatchObject({ ok: false, reason: 'rolled_back' });
  });

  it('the owner deletes the checkpoints and re-hashes the chain from an edited event: verify refuses it', async () => {
    const { tid, ops } = await witnessedChain();
    const { rows } = await owner.query<AuditRow>(
      'select * from coffer.audit_events where tenant_id = $1 order by seq',
      [tid],
    );
    await asTamperer(owner, async () => {
      await owner.query('delete from coffer.audit_checkpoints where tenant_id = $1', [tid]);
      let prev = rows[1]?.hash as Buffer;
      for (const r of rows.slice(2)) {
        const seq = Number(r.seq);
        const event = seq === 3 ? { ...toAuditEvent(r), resource: 'shared/app/INNOCENT' } : toAuditEvent(r);
        const digest = eventDigest(event);
        const hash = linkHash(prev, seq, digest);
        await owner.query(
          'update coffer.audit_events set resource = $3, digest = $4, prev_hash = $5, hash = $6 where tenant_id = $1 and seq = $2',
          [tid, seq, event.resource, digest, prev, hash],
        );
        prev = hash;
      }
      await owner.query('update coffer.audit_heads set hash = $2 where tenant_id = $1', [tid, prev]);
    });
    expect(await verifyW(ops)).toMatchObject({ ok: false });
  });

  it('a holder of the master key rewrites the chain with keyed links, re-signs the head and drops the checkpoints: the witness catches it', async () => {
    const { tid, ops } = await witnessedChain();
    const { rows } = await owner.query<AuditRow>(
      'select * from coffer.audit_events where tenant_id = $1 order by seq',
      [tid],
    );
    const key = testLinkKey(tid).key;
    await asTamperer(owner, async () => {
      await owner.query('delete from coffer.audit_checkpoints where tenant_id = $1', [tid]);
      let prev = rows[1]?.hash as Buffer;
      for (const r of rows.slice(2)) {
        const seq = Number(r.seq);
        const event = seq === 3 ? { ...toAuditEvent(r), resource: 'shared/app/INNOCENT' } : toAuditEvent(r);
        const digest = keyedDigest(event);
        const hash = keyedLink(key, prev, seq, digest);
        await owner.query(
          'update coffer.audit_events set resource = $3, digest = $4, prev_hash = $5, hash = $6 where tenant_id = $1 and seq = $2',
          [tid, seq, event.resource, digest, prev, hash],
        );
        prev = hash;
      }
      await owner.query('update coffer.audit_heads set hash = $2 where tenant_id = $1', [tid, prev]);
      await signHead(owner, tid);
    });
    // Every link and the head check out under the tenant's key; only the witness still holds the old chain.
    expect(await verifyW(ops)).toMatchObject({ ok: false, reason: 'rolled_back' });
  });

  it('the owner deletes the checkpoints of a tenant older than the checkpoint age: verify asks for one', async () => {
    const tenant = await createTenant(w.app, wRoot);
    const tid = tenant.tenant.id;
    await resetChain(owner, tid);
    const start = Date.now() - 3 * 3_600_000;
    await appendEvents(
      owner,
      tid,
      Array.from({ length: 5 }, (_, i) =>
        ownerEvent(tid, {
          occurredAt: new Date(start + i * 1000),
          action: 'secrets.read',
          resource: `shared/x/S_${i}`,
        }),
      ),
    );
    await owner.query(`update coffer.tenants set created_at = now() - interval '3 hours' where id = $1`, [tid]);
    const ops = opsApi(w.app, tenant.adminToken);
    const h = await head(tid);
    await w.app.jobs.audit.sign(tid, Number(h.seq), h.hash, 'periodic');
    expect(await verifyW(ops)).toMatchObject({ ok: true });
    await asTamperer(owner, () => owner.query('delete from coffer.audit_checkpoints where tenant_id = $1', [tid]));
    // The witness still agrees with the chain (nothing was rolled back); what is missing is the checkpoint.
    expect(await verifyW(ops)).toMatchObject({ ok: false, reason: 'stale_checkpoint' });
  });

  it("the owner truncates the tail and strips the head's signature, for the next append to sign it afresh: refused", async () => {
    const { tid, ops } = await tenantWithChain();
    const api = secretsApi(t.app, (await createTenant(t.app, root)).adminToken);
    const keep = Number((await head(tid)).seq) - 2;
    const kept = await rowAt(tid, keep);
    await asTamperer(owner, async () => {
      await owner.query('delete from coffer.audit_events where tenant_id = $1 and seq > $2', [tid, keep]);
      await owner.query(
        'update coffer.audit_heads set seq = $2, hash = $3, key_id = null, signed_at = null, mac = null where tenant_id = $1',
        [tid, keep, kept.hash],
      );
    });
    // The tenant's next audited request cannot chain onto it (the append refuses an unsigned head past keyed_from)...
    expect((await ops.summary()).statusCode).toBe(503);
    // ...other tenants carry on, and verify names the head.
    expect((await api.put('shared/app/OTHER', { value: 'x' })).statusCode).toBe(201);
    expect(await verify(ops)).toMatchObject({ ok: false, reason: 'bad_head', firstBrokenSeq: keep });
  });

  it('the owner makes a head look like one from before links were keyed, to pass a forged unkeyed event: verify refuses it', async () => {
    const { tid, ops } = await tenantWithChain();
    const f = await forgedRead(owner, tid);
    await asTamperer(owner, async () => {
      await insertForged(owner, tid, f);
      // keyed_from raised over the keyed events, so the forged one falls in the unkeyed prefix; no signature.
      await owner.query(
        'update coffer.audit_heads set keyed_from = $2, key_id = null, signed_at = null, mac = null where tenant_id = $1',
        [tid, f.seq + 1],
      );
    });
    expect(await verify(ops)).toMatchObject({ ok: false, reason: 'edited', firstBrokenSeq: 1 });
  });

  it('any role sets coffer.retention_purge=on and deletes audit rows, or deletes checkpoints: refused', async () => {
    const { tid, api, checkpointSeq } = await witnessedChain(1);
    await api.put('shared/app/AFTER', { value: 'x' });
    const purge = await sqlState(
      (async () => {
        await owner.query('begin');
        try {
          await owner.query(`set local coffer.retention_purge = 'on'`);
          // Past the last checkpoint: no retention run could drop these.
          await owner.query('delete from coffer.audit_events where tenant_id = $1 and seq > $2', [tid, checkpointSeq]);
        } finally {
          await owner.query('rollback');
        }
      })(),
    );
    expect(purge?.code).toBe('42501');
    const checkpoint = await sqlState(owner.query('delete from coffer.audit_checkpoints where tenant_id = $1', [tid]));
    expect(checkpoint?.code).toBe('42501');
  });
});
