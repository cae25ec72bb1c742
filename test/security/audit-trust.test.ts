import { randomBytes } from 'node:crypto';
import { AuditSummary, AuditVerifyResult } from '@coffer/contracts';
import type pg from 'pg';
import { describe, expect, inject, it } from 'vitest';
import { eventDigest, linkHash } from '../../apps/api/src/audit/audit.digest.ts';
import { sqlState, withClient } from '../support/db.ts';
import { createTenant } from '../support/factories.ts';
import { asTamperer, type OpsApi, opsApi, ownerEvent } from '../support/ops.ts';
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
