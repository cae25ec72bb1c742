import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  AuditPage,
  AuditVerifyResult,
  Bundle,
  EnvironmentList,
  SecretPage,
  SecretVersions,
  SecretWithValue,
} from '@coffer/contracts';
import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { linkKeys } from '../../apps/api/src/audit/audit.digest.ts';
import { systemEvent } from '../../apps/api/src/audit/audit.events.ts';
import { appendInTx } from '../../apps/api/src/audit/audit.writer.ts';
import { parseKeyring } from '../../apps/api/src/config.ts';
import { hashClientSecret } from '../../apps/api/src/crypto/client-secret-hash.ts';
import { dataKeyContext, fingerprintKeyContext, MasterKeyring, newDataKey } from '../../apps/api/src/crypto/keyring.ts';
import { RowMacs } from '../../apps/api/src/crypto/row-macs.ts';
import { findMigrationsFolder } from '../../apps/api/src/db/migrate.ts';
import * as schema from '../../apps/api/src/db/schema.ts';
import { sealIdentity } from '../../apps/api/src/identities/identities.queries.ts';
import { ensurePlatformAdmin } from '../../apps/api/src/tenants/bootstrap.ts';
import { seedVersions } from '../bench/seed.ts';
import { migrateScratch } from '../support/db.ts';
import { bearer, login } from '../support/factories.ts';
import { expectOk } from '../support/secrets.ts';
import { type ScratchDatabase, scratchDatabase } from '../support/server-process.ts';
import { createTestApp, type TestApp } from '../support/test-app.ts';

/**
 * Environments arrive by migration into databases that already hold secrets, versions and audit events. This file
 * builds such a database at the schema before environments (the migrations up to the one that adds them), with data
 * written the way the service wrote it then, migrates it, and replays the requests a client made before: each
 * answers as it did, everything lands in `default`, and the audit chain still verifies.
 */

const FIRST_ENVIRONMENT_MIGRATION = '0018_environments';

let scratch: ScratchDatabase;
let t: TestApp;
let folder: string;
const tenantId = '6a0c3b9e-3c1e-4c55-9d1c-3f1f3f6e0a01';
const adminId = '6a0c3b9e-3c1e-4c55-9d1c-3f1f3f6e0a02';
const serviceId = '6a0c3b9e-3c1e-4c55-9d1c-3f1f3f6e0a03';
const adminSecret = `admin-secret-${Math.random().toString(36).slice(2)}-${Date.now()}`;
const serviceSecret = `service-secret-${Math.random().toString(36).slice(2)}-${Date.now()}`;

/** The migrations folder as it was before environments: the journal stops short of them. */
function foldersBeforeEnvironments(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'coffer-pre-env-'));
  cpSync(findMigrationsFolder(), dir, { recursive: true });
  const journalPath = path.join(dir, 'meta', '_journal.json');
  const journal = JSON.parse(readFileSync(journalPath, 'utf8')) as { entries: { tag: string }[] };
  const cut = journal.entries.findIndex((e) => e.tag === FIRST_ENVIRONMENT_MIGRATION);
  if (cut < 1) throw new Error(`${FIRST_ENVIRONMENT_MIGRATION} is not in the journal`);
  journal.entries = journal.entries.slice(0, cut);
  writeFileSync(journalPath, JSON.stringify(journal));
  return dir;
}

beforeAll(async () => {
  scratch = await scratchDatabase();
  folder = foldersBeforeEnvironments();
  await migrateScratch(scratch.ownerUrl, folder);
  const keyring = new MasterKeyring(parseKeyring(inject('masterKeys'), 'test', []) ?? []);

  // The tenant, its keys and two identities, as tenant creation and identity creation wrote them.
  const c = new pg.Client({ connectionString: scratch.ownerUrl });
  await c.connect();
  try {
    const dek = newDataKey();
    const wrapped = keyring.wrap(dek, dataKeyContext(tenantId, 1));
    const fp = keyring.wrap(newDataKey(), fingerprintKeyContext(tenantId));
    await c.query('begin');
    await c.query(`select set_config('app.tenant_id', $1, true)`, [tenantId]);
    await c.query(
      `insert into coffer.tenants (id, slug, name, fingerprint_key_wrapped, fingerprint_key_master_id)
       values ($1, 'legacy', 'Legacy tenant', $2, $3)`,
      [tenantId, fp.wrapped, fp.masterKeyId],
    );
    await c.query(
      `insert into coffer.tenant_keys (tenant_id, version, wrapped_key, master_key_id, state) values ($1, 1, $2, $3, 'active')`,
      [tenantId, wrapped.wrapped, wrapped.masterKeyId],
    );
    await c.query(
      `insert into coffer.identities (id, tenant_id, client_id, name, role, secret_hash, policies)
       values ($1, $2, 'legacy-admin', 'admin', 'admin', $3, '[]'), ($4, $2, 'legacy-service', 'svc', 'service', $5, $6)`,
      [
        adminId,
        tenantId,
        await hashClientSecret(adminSecret),
        serviceId,
        await hashClientSecret(serviceSecret),
        JSON.stringify([{ path: 'shared/legacy/BULK_1', capabilities: ['read'] }]),
      ],
    );
    await c.query('commit');
  } finally {
    await c.end();
  }
  // Identities carry the API's row MACs, as identity creation wrote them.
  const macs = new RowMacs(keyring);
  const ownerPool = new pg.Pool({ connectionString: scratch.ownerUrl, max: 1 });
  try {
    await drizzle(ownerPool, { schema }).transaction(async (tx) => {
      await tx.execute(sql`select set_config('app.tenant_id', ${tenantId}, true)`);
      for (const row of await tx.select().from(schema.identities)) await sealIdentity(tx, macs, row);
    });
  } finally {
    await ownerPool.end();
  }
  await seedVersions(scratch.ownerUrl, keyring, tenantId, { kind: 'shared', owner: 'legacy', secrets: 3, versions: 3 });
  // Audit events, through the service's own writer: staged, chained at commit.
  const pool = new pg.Pool({ connectionString: scratch.appUrl, max: 1 });
  try {
    await drizzle(pool, { schema }).transaction(async (tx) => {
      await appendInTx(
        tx,
        [1, 2, 3].map((n) =>
          systemEvent('system', {
            tenantId,
            action: 'secrets.write',
            outcome: 'allowed',
            resource: `shared/legacy/BULK_${n}`,
            version: 3,
            details: { created: false },
          }),
        ),
        linkKeys(keyring),
      );
    });
  } finally {
    await pool.end();
  }

  // Then the upgrade: the remaining migrations, and the new server on the same database.
  await migrateScratch(scratch.ownerUrl);
  t = await createTestApp({ DATABASE_URL: scratch.ownerUrl, DATABASE_APP_URL: scratch.appUrl });
  await ensurePlatformAdmin(t.db, {
    bootstrapSecret: adminSecret,
    dataDir: os.tmpdir(),
    log: pino({ level: 'silent' }),
    macs: t.macs,
  });
});
afterAll(async () => {
  await t?.close();
  await scratch?.drop();
  if (folder) rmSync(folder, { recursive: true, force: true });
});

describe('environments: a database made before them, migrated', () => {
  it('answers every request of before exactly as before, from `default`', async () => {
    const admin = await login(t.app, 'legacy-admin', adminSecret);
    const service = await login(t.app, 'legacy-service', serviceSecret);
    const get = (token: string, url: string) => t.app.inject({ method: 'GET', url, headers: bearer(token) });

    for (const n of [1, 2, 3]) {
      const cur = expectOk(await get(admin, `/v1/secrets/shared/legacy/BULK_${n}`), 200, SecretWithValue);
      expect([cur.value, cur.version]).toEqual([`value-BULK_${n}-3`, 3]);
      const old = expectOk(await get(admin, `/v1/secrets/shared/legacy/BULK_${n}?version=1`), 200, SecretWithValue);
      expect(old.value).toBe(`value-BULK_${n}-1`);
      const same = expectOk(await get(admin, `/v1/secrets/shared/legacy/BULK_${n}?env=default`), 200, SecretWithValue);
      expect(same).toEqual(cur);
      const versions = expectOk(await get(admin, `/v1/secrets/shared/legacy/BULK_${n}/versions`), 200, SecretVersions);
      expect(versions.items.map((i) => [i.version, i.state])).toEqual([
        [3, 'current'],
        [2, 'previous'],
        [1, 'old'],
      ]);
    }
    const list = expectOk(await get(admin, '/v1/secrets?owner=legacy'), 200, SecretPage);
    expect(list.items.map((i) => i.name)).toEqual(['BULK_1', 'BULK_2', 'BULK_3']);
    const bundle = expectOk(await get(admin, '/v1/bundles/shared/legacy'), 200, Bundle);
    expect(bundle.versions).toEqual({ BULK_1: 3, BULK_2: 3, BULK_3: 3 });

    // A policy written before environments: the same access, no more.
    expect(expectOk(await get(service, '/v1/secrets/shared/legacy/BULK_1'), 200, SecretWithValue).value).toBe(
      'value-BULK_1-3',
    );
    expect((await get(service, '/v1/secrets/shared/legacy/BULK_2')).statusCode).toBe(403);

    // The audit events written before are there, unchanged, and the chain still verifies across the upgrade.
    const events = expectOk(await get(admin, '/v1/audit?action=secrets.write&path=shared/legacy/'), 200, AuditPage);
    expect(events.items.map((e) => [e.seq, e.resource, e.details])).toEqual([
      [3, 'shared/legacy/BULK_3', { created: false }],
      [2, 'shared/legacy/BULK_2', { created: false }],
      [1, 'shared/legacy/BULK_1', { created: false }],
    ]);
    expect(expectOk(await get(admin, '/v1/audit/verify'), 200, AuditVerifyResult).ok).toBe(true);

    // Everything lives in `default`, the tenant's only environment; writes go on from the versions it had.
    expect(expectOk(await get(admin, '/v1/environments'), 200, EnvironmentList).items.map((e) => e.slug)).toEqual([
      'default',
    ]);
    const put = await t.app.inject({
      method: 'PUT',
      url: '/v1/secrets/shared/legacy/BULK_1',
      headers: bearer(admin),
      payload: { value: 'after-the-upgrade', ifVersion: 3 },
    });
    expect(put.statusCode).toBe(200);
    expect((put.json() as { version: number }).version).toBe(4);
  });
});
