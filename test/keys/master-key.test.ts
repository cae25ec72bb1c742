import os from 'node:os';
import {
  AuditVerifyResult,
  CreatePlatformAdminResponse,
  CreateWebhookResponse,
  Readiness,
  RewrapResponse,
  SecretWithValue,
  SystemKeys,
} from '@coffer/contracts';
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseKeyring } from '../../apps/api/src/config.ts';
import { MasterKeyring, type WrappedKey } from '../../apps/api/src/crypto/keyring.ts';
import { systemService } from '../../apps/api/src/data-keys/system.service.ts';
import type { RequestContext } from '../../apps/api/src/http/request-context.ts';
import { ensurePlatformAdmin } from '../../apps/api/src/tenants/bootstrap.ts';
import { migrateScratch } from '../support/db.ts';
import { bearer, createIdentity, createTenant, login, rootToken, type TestTenant } from '../support/factories.ts';
import { baseMasterKeyId, newMasterKey, opsApi } from '../support/ops.ts';
import { expectError, expectOk, secretsApi } from '../support/secrets.ts';
import { type ScratchDatabase, scratchDatabase } from '../support/server-process.ts';
import { createTestApp, type TestApp } from '../support/test-app.ts';

/**
 * Master-key rotation, on a database of this file's own: the audit chain's links are keyed under the active master
 * key, so events made under this file's keys (`old`, then `new`) would otherwise sit in the platform chain that
 * other files verify with the run's key (`base`). Its tenants are created under those keys, so a rewrap whose
 * keyring holds only them touches this file's rows alone; the file puts its rows back under the base key at the end.
 */

const base = inject('masterKeys');
const baseId = baseMasterKeyId();
const kOld = newMasterKey('mk-old');
const kNew = newMasterKey('mk-new');
const kUnrelated = newMasterKey('mk-unrelated');

let t: TestApp;
let owner: pg.Client;
const apps: TestApp[] = [];

/** Its own database: links this file makes under its keys stay out of the platform chain the other files verify. */
let scratch: ScratchDatabase;
const onScratch = () => ({ DATABASE_URL: scratch.ownerUrl, DATABASE_APP_URL: scratch.appUrl });

async function appWith(keyring: string): Promise<TestApp> {
  const app = await createTestApp({ COFFER_MASTER_KEYS: keyring, ...onScratch() });
  apps.push(app);
  return app;
}

/** Moves whatever this file left under its own keys back under the run's key, so other apps stay ready. */
async function restoreBaseKey(): Promise<RewrapResponse> {
  const restore = await appWith(`${base},${kNew.entry},${kOld.entry}`);
  return expectOk(await opsApi(restore.app, await rootToken(restore.app)).rewrap(), 200, RewrapResponse);
}

beforeAll(async () => {
  scratch = await scratchDatabase();
  await migrateScratch(scratch.ownerUrl);
  t = await createTestApp(onScratch());
  await ensurePlatformAdmin(t.db, {
    bootstrapSecret: inject('rootSecret'),
    dataDir: os.tmpdir(),
    log: pino({ level: 'silent' }),
    macs: t.macs,
  });
  owner = new pg.Client({ connectionString: scratch.ownerUrl });
  await owner.connect();
});
afterAll(async () => {
  try {
    await restoreBaseKey();
  } finally {
    await owner.end();
    for (const app of apps) await app.close();
    await t.close();
    await scratch.drop();
  }
});

async function dekMasterIds(tenantIds: string[]): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const id of tenantIds) {
    const { rows } = await owner.query<{ m: string }>(
      `select master_key_id as m from coffer.tenant_keys where tenant_id = $1 and state <> 'retired'
       union all select fingerprint_key_master_id from coffer.tenants where id = $1
       union all select secret_master_key_id from coffer.webhooks where tenant_id = $1
       union all select master_key_id from coffer.audit_checkpoints where tenant_id = $1`,
      [id],
    );
    out[id] = rows.map((r) => r.m).sort();
  }
  return out;
}

const ready = async (app: TestApp) => {
  const res = await app.app.inject({ url: '/readyz' });
  return { status: res.statusCode, body: Readiness.parse(res.json()) };
};

const inUse = (keys: SystemKeys, id: string) => keys.inUse.find((u) => u.masterKeyId === id);

/** A keyring that fails on its second wrap: a rewrap that crashes after its first batch. */
class CrashingKeyring extends MasterKeyring {
  private wraps = 0;
  override wrap(dataKey: Buffer, context: string): WrappedKey {
    this.wraps++;
    if (this.wraps > 1) throw new Error('simulated crash during rewrap');
    return super.wrap(dataKey, context);
  }
}

function crashingKeyring(spec: string): MasterKeyring {
  const problems: string[] = [];
  const keys = parseKeyring(spec, 'test', problems);
  if (!keys) throw new Error(problems.join('; '));
  return new CrashingKeyring(keys);
}

describe('master-key rotation', () => {
  it('re-wraps every data key under the new key, resumably and idempotently; a keyring holding none of the keys in use is not ready', async () => {
    // Tenants created while `old` is the active master key.
    const appOld = await appWith(`${kOld.entry},${base}`);
    const rootOld = await rootToken(appOld.app);
    // Root's row MAC is under the run's key, which the later keyrings lack: this file's platform admin is MACed
    // under `old`, like everything else of the file, and moves with it.
    const operator = expectOk(
      await appOld.app.inject({
        method: 'POST',
        url: '/v1/platform/admins',
        headers: bearer(rootOld),
        payload: { name: `master-key-operator-${Date.now()}` },
      }),
      201,
      CreatePlatformAdminResponse,
    );
    const operatorToken = (app: TestApp) => login(app.app, operator.admin.clientId, operator.clientSecret);
    const t1: TestTenant = await createTenant(appOld.app, rootOld);
    const t2: TestTenant = await createTenant(appOld.app, rootOld);
    const mine = [t1.tenant.id, t2.tenant.id];
    const s1 = secretsApi(appOld.app, t1.adminToken);
    expect((await s1.put('sandbox/m/ONE', { value: 'one-v1' })).statusCode).toBe(201);
    expect((await s1.put('sandbox/m/ONE', { value: 'one-v2' })).statusCode).toBe(200);
    expect((await secretsApi(appOld.app, t2.adminToken).put('sandbox/m/TWO', { value: 'two-v1' })).statusCode).toBe(
      201,
    );
    // A webhook secret and a signed checkpoint, both under `old` too.
    expectOk(
      await opsApi(appOld.app, t1.adminToken).createWebhook({
        url: 'http://127.0.0.1:9/never',
        events: ['key.rotated'],
      }),
      201,
      CreateWebhookResponse,
    );
    const head = (
      await owner.query<{ seq: string; hash: Buffer }>(
        'select seq, hash from coffer.audit_heads where tenant_id = $1',
        [t1.tenant.id],
      )
    ).rows[0];
    if (!head) throw new Error('no chain head');
    await appOld.app.jobs.audit.sign(t1.tenant.id, Number(head.seq), head.hash, 'periodic');

    // A tenant of the run's key, which this file's keyrings cannot unwrap.
    const control = await createTenant(t.app);
    expect((await secretsApi(t.app, control.adminToken).put('sandbox/c/KEY', { value: 'control' })).statusCode).toBe(
      201,
    );

    expect(await dekMasterIds(mine)).toEqual({
      [t1.tenant.id]: [kOld.id, kOld.id, kOld.id, kOld.id],
      [t2.tenant.id]: [kOld.id, kOld.id],
    });
    const before = expectOk(await opsApi(appOld.app, rootOld).systemKeys(), 200, SystemKeys);
    expect(before.activeMasterKeyId).toBe(kOld.id);
    expect(before.keyring).toEqual([kOld.id, baseId]);
    // Row MACs under `old`: per tenant its admin, its secret and the secret's versions (3 + 4), and the operator.
    expect(inUse(before, kOld.id)).toEqual({
      masterKeyId: kOld.id,
      inKeyring: true,
      dataKeys: 2,
      fingerprintKeys: 2,
      webhookSecrets: 1,
      checkpoints: 1,
      rowMacs: 8,
    });
    expect(inUse(before, baseId)?.inKeyring).toBe(true);

    // The operator puts `new` first and keeps `old` to unwrap; this keyring lacks the run's key.
    const appNew = await appWith(`${kNew.entry},${kOld.entry}`);
    const rootNew = await operatorToken(appNew);
    // Root's own row is MACed under a key this keyring lacks: it cannot act here (integrity_error), nor be re-MACed.
    expect(
      (
        await appNew.app.inject({
          method: 'POST',
          url: '/v1/auth/token',
          payload: { clientId: 'root', clientSecret: inject('rootSecret') },
        })
      ).json().error.code,
    ).toBe('integrity_error');
    // It lacks the run's key, but holds keys in use and its active key is sound: ready (readiness must not hang on
    // rows naming other keys, which the app role can write); the census names the key it lacks.
    expect((await appNew.app.inject({ url: '/readyz' })).statusCode).toBe(200);
    expect(inUse(expectOk(await opsApi(appNew.app, rootNew).systemKeys(), 200, SystemKeys), baseId)?.inKeyring).toBe(
      false,
    );

    // A rewrap that crashes after its first batch leaves part of the work done, and nothing half-done.
    const crashing = systemService({
      db: appNew.db,
      keyring: crashingKeyring(`${kNew.entry},${kOld.entry}`),
      audit: { record: async () => undefined, appendInTx: async () => undefined, appended: () => undefined },
      batchSize: 1,
    });
    const ctx: RequestContext = { principal: null, requestId: 'test-crash', sourceIp: null, userAgent: null };
    await expect(crashing.rewrap(ctx)).rejects.toThrow('simulated crash');
    const { rows: split } = await owner.query<{ m: string; n: number }>(
      `select master_key_id as m, count(*)::int as n from coffer.tenant_keys where tenant_id = any($1::uuid[]) group by 1 order by 1`,
      [mine],
    );
    // ('mk-new-…' sorts before 'mk-old-…'.)
    expect(split).toEqual([
      { m: kNew.id, n: 1 },
      { m: kOld.id, n: 1 },
    ]);

    // Resumed through the API: it finishes what is left, touches nothing it cannot unwrap, and does not fail.
    const rewrapped = expectOk(await opsApi(appNew.app, rootNew).rewrap(), 200, RewrapResponse);
    expect(rewrapped.activeMasterKeyId).toBe(kNew.id);
    expect(rewrapped.rewrapped).toEqual({
      dataKeys: 1,
      fingerprintKeys: 2,
      webhookSecrets: 1,
      checkpoints: 1,
      rowMacs: 8,
    });
    // What remains is under the run's key, which this keyring cannot reach (the control tenant at least).
    expect(rewrapped.remaining).toBeGreaterThanOrEqual(2);
    // Idempotent: nothing more to do.
    expect(expectOk(await opsApi(appNew.app, rootNew).rewrap(), 200, RewrapResponse).rewrapped).toEqual({
      dataKeys: 0,
      fingerprintKeys: 0,
      webhookSecrets: 0,
      checkpoints: 0,
      rowMacs: 0,
    });
    expect(await dekMasterIds([...mine, control.tenant.id])).toEqual({
      [t1.tenant.id]: [kNew.id, kNew.id, kNew.id, kNew.id],
      [t2.tenant.id]: [kNew.id, kNew.id],
      [control.tenant.id]: [baseId, baseId],
    });
    const after = expectOk(await opsApi(appNew.app, rootNew).systemKeys(), 200, SystemKeys);
    expect(inUse(after, kOld.id)).toBeUndefined();
    expect(inUse(after, kNew.id)).toEqual({
      masterKeyId: kNew.id,
      inKeyring: true,
      dataKeys: 2,
      fingerprintKeys: 2,
      webhookSecrets: 1,
      checkpoints: 1,
      rowMacs: 8,
    });
    expect(inUse(after, baseId)?.inKeyring).toBe(false);

    // With only the new key, everything of these tenants reads, writes, and their audit chain verifies.
    const appOnlyNew = await appWith(kNew.entry);
    const n1 = secretsApi(appOnlyNew.app, t1.adminToken);
    expect(expectOk(await n1.get('sandbox/m/ONE'), 200, SecretWithValue).value).toBe('one-v2');
    expect(expectOk(await n1.get('sandbox/m/ONE', 1), 200, SecretWithValue).value).toBe('one-v1');
    expect((await n1.put('sandbox/m/ONE', { value: 'one-v3' })).statusCode).toBe(200);
    expect(expectOk(await n1.get('sandbox/m/ONE'), 200, SecretWithValue).value).toBe('one-v3');
    expect(
      expectOk(await secretsApi(appOnlyNew.app, t2.adminToken).get('sandbox/m/TWO'), 200, SecretWithValue).value,
    ).toBe('two-v1');
    const verified = expectOk(await opsApi(appOnlyNew.app, t1.adminToken).verify(), 200, AuditVerifyResult);
    expect(verified).toMatchObject({ ok: true, checkpoints: 1 });

    // An instance holding only an unrelated key is not ready and cannot read these tenants' secrets.
    const appUnrelated = await appWith(kUnrelated.entry);
    expect((await appUnrelated.app.inject({ url: '/readyz' })).statusCode).not.toBe(200);
    const refused = await secretsApi(appUnrelated.app, t1.adminToken).get('sandbox/m/ONE');
    expect(refused.statusCode).toBeGreaterThanOrEqual(500);
    expect(refused.body).not.toContain('one-v3');

    // The run's own tenants never moved.
    expect(expectOk(await secretsApi(t.app, control.adminToken).get('sandbox/c/KEY'), 200, SecretWithValue).value).toBe(
      'control',
    );

    // Back under the run's key: an instance with the run's keyring is ready again.
    const restored = await restoreBaseKey();
    // One more row MAC than before: the write made with only the new key (ONE's version 3, its row re-MACed).
    expect(restored.rewrapped).toEqual({
      dataKeys: 2,
      fingerprintKeys: 2,
      webhookSecrets: 1,
      checkpoints: 1,
      rowMacs: 9,
    });
    expect(await dekMasterIds(mine)).toEqual({
      [t1.tenant.id]: [baseId, baseId, baseId, baseId],
      [t2.tenant.id]: [baseId, baseId],
    });
    const readyAgain = await ready(t);
    expect(readyAgain.body.checks.find((c) => c.name === 'master-keyring')).toEqual({
      name: 'master-keyring',
      ok: true,
    });
    expect(readyAgain.status).toBe(200);
  });

  // Regression: /readyz answered 500 (its 503 body failed the error-envelope schema) instead of naming the key.
  it('an instance whose keyring lacks a key in use answers /readyz 503 and names the missing key id', async () => {
    const appUnrelated = await appWith(kUnrelated.entry);
    const res = await appUnrelated.app.inject({ url: '/readyz' });
    expect({ status: res.statusCode, body: res.body }).toMatchObject({ status: 503 });
    const unrelated = await ready(appUnrelated);
    expect(unrelated.body.status).toBe('not_ready');
    const check = unrelated.body.checks.find((c) => c.name === 'master-keyring');
    expect(check?.ok).toBe(false);
    expect(check?.message).toContain(baseId);
    expect(check?.message).not.toContain(kUnrelated.id);
    expect(unrelated.body.checks.find((c) => c.name === 'database')?.ok).toBe(true);
  });

  it('only the platform admin may see the census or rewrap', async () => {
    const tenant = await createTenant(t.app);
    const auditor = await createIdentity(t.app, tenant.adminToken, { role: 'auditor' });
    for (const token of [tenant.adminToken, auditor.token]) {
      expectError(await opsApi(t.app, token).systemKeys(), 403, 'forbidden');
      expectError(await opsApi(t.app, token).rewrap(), 403, 'forbidden');
    }
    expectError(await opsApi(t.app, null).rewrap(), 401, 'unauthorized');
    const census = expectOk(await opsApi(t.app, await rootToken(t.app)).systemKeys(), 200, SystemKeys);
    expect(census.activeMasterKeyId).toBe(baseId);
    expect(inUse(census, baseId)?.dataKeys).toBeGreaterThanOrEqual(1);
  });
});

describe('readiness and rows the app role can write', () => {
  it('readiness hostage: a webhook row naming a master key id not in the keyring, written as coffer_app, leaves /readyz 200 and shows in the census', async () => {
    const tenant = await createTenant(t.app);
    const { webhook } = expectOk(
      await opsApi(t.app, tenant.adminToken).createWebhook({ url: 'http://127.0.0.1:9/x', events: ['key.rotated'] }),
      201,
      CreateWebhookResponse,
    );
    // What a compromised API host can do with coffer_app's own credentials, under RLS.
    const asApp = new pg.Client({ connectionString: scratch.appUrl });
    await asApp.connect();
    try {
      await asApp.query('begin');
      await asApp.query(`select set_config('app.tenant_id', $1, true)`, [tenant.tenant.id]);
      const { rowCount } = await asApp.query(
        `update coffer.webhooks set secret_master_key_id = 'ghost-key' where id = $1`,
        [webhook.id],
      );
      await asApp.query('commit');
      expect(rowCount).toBe(1);

      const r = await ready(t);
      expect({ status: r.status, checks: r.body.checks.filter((c) => !c.ok) }).toEqual({ status: 200, checks: [] });
      // The orphan reference is still reported, where the platform admin looks: the census.
      const census = expectOk(await opsApi(t.app, await rootToken(t.app)).systemKeys(), 200, SystemKeys);
      expect(inUse(census, 'ghost-key')).toMatchObject({ inKeyring: false, webhookSecrets: 1 });
    } finally {
      await asApp.query('rollback').catch(() => undefined);
      await asApp.end();
      await opsApi(t.app, tenant.adminToken).deleteWebhook(webhook.id);
    }
  });
});
