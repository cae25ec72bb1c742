import { randomBytes, randomUUID } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AuditVerifyResult } from '@coffer/contracts';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { cleanEvent, eventDigest, linkKeys, toAppendRow } from '../../apps/api/src/audit/audit.digest.ts';
import { hashClientSecret } from '../../apps/api/src/crypto/client-secret-hash.ts';
import { findMigrationsFolder } from '../../apps/api/src/db/migrate.ts';
import { backfillRowMacs } from '../../apps/api/src/db/row-mac-backfill.ts';
import { testKeyring } from '../support/audit.ts';
import { migrateScratch, withClient } from '../support/db.ts';
import { bearer } from '../support/factories.ts';
import { craftJwt, ed25519Signer } from '../support/jwt.ts';
import { ownerEvent } from '../support/ops.ts';
import { expectOk } from '../support/secrets.ts';
import { type ScratchDatabase, scratchDatabase } from '../support/server-process.ts';
import { createTestApp, type TestApp } from '../support/test-app.ts';

/**
 * A database at migration 0014, from before the audit chain was keyed (its events carry the digest the API computed
 * and plain SHA-256 links, its heads are unsigned, retention is a column of tenants), migrated to this build.
 */
describe('upgrading a database from migration 0014', () => {
  let scratch: ScratchDatabase;
  let folder: string;
  let t: TestApp | undefined;
  const tenant = { a: randomUUID(), b: randomUUID(), c: randomUUID(), d: randomUUID() };
  const auditorId = randomUUID();
  const OLD_EVENTS = 5;

  /** The migrations this build ships, up to and including `lastIdx`. */
  function migrationsThrough(lastIdx: number): string {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'coffer-migrations-'));
    cpSync(findMigrationsFolder(), dir, { recursive: true });
    const journalFile = path.join(dir, 'meta', '_journal.json');
    const journal = JSON.parse(readFileSync(journalFile, 'utf8')) as { entries: { idx: number; tag: string }[] };
    const kept = journal.entries.filter((e) => e.idx <= lastIdx);
    expect(kept.at(-1)?.tag).toBe('0014_federation');
    writeFileSync(journalFile, JSON.stringify({ ...journal, entries: kept }));
    return dir;
  }

  beforeAll(async () => {
    scratch = await scratchDatabase();
    folder = migrationsThrough(14);
    await migrateScratch(scratch.ownerUrl, folder);
    await withClient(scratch.ownerUrl, async (c) => {
      const inTenant = async (id: string, sql: string, values: unknown[]) => {
        await c.query('begin');
        await c.query(`select set_config('app.tenant_id', $1, true)`, [id]);
        await c.query(sql, values);
        await c.query('commit');
      };
      for (const [key, days] of [
        ['a', 30],
        ['b', 5000],
        ['c', 400],
        ['d', 10],
      ] as const) {
        await inTenant(
          tenant[key],
          'insert into coffer.tenants (id, slug, name, audit_retention_days) values ($1, $2, $3, $4)',
          [tenant[key], `legacy-${key}-${randomBytes(4).toString('hex')}`, `Legacy ${key}`, days],
        );
      }
      await inTenant(
        tenant.a,
        `insert into coffer.identities (id, tenant_id, client_id, name, role, secret_hash)
         values ($1, $2, $3, 'legacy auditor', 'auditor', $4)`,
        [auditorId, tenant.a, `legacy-${randomBytes(6).toString('hex')}`, await hashClientSecret('not used here')],
      );
      // Events as 0014's audit_append took them: the digest computed by the API, the link a plain SHA-256.
      const events = Array.from({ length: OLD_EVENTS }, (_, i) =>
        ownerEvent(tenant.a, { action: 'secrets.read', resource: `sandbox/old/S_${i}` }),
      );
      const rows = events.map((e) => ({ ...toAppendRow(e), digest: eventDigest(cleanEvent(e)).toString('hex') }));
      await c.query('select coffer.audit_append($1::uuid, $2::jsonb)', [tenant.a, JSON.stringify(rows)]);
    });
    await migrateScratch(scratch.ownerUrl);
    t = await createTestApp({ DATABASE_URL: scratch.ownerUrl, DATABASE_APP_URL: scratch.appUrl });
  });
  afterAll(async () => {
    await t?.close();
    await scratch?.drop();
    rmSync(folder, { recursive: true, force: true });
  });

  it('moves retention to coffer.audit_retention within 30..3650 days, and marks where keyed links begin', async () => {
    const state = await withClient(scratch.ownerUrl, async (c) => {
      await c.query('begin');
      // The owner is under forced RLS too: lift it for this look, in a transaction that is rolled back.
      await c.query('alter table coffer.audit_retention no force row level security');
      await c.query('alter table coffer.audit_heads no force row level security');
      const retention = await c.query<{ tenant_id: string; days: number }>(
        'select tenant_id, days from coffer.audit_retention where tenant_id = any($1::uuid[])',
        [Object.values(tenant)],
      );
      const head = await c.query<{ seq: string; keyed_from: string; mac: Buffer | null }>(
        'select seq, keyed_from, mac from coffer.audit_heads where tenant_id = $1',
        [tenant.a],
      );
      const column = await c.query(
        `select 1 from information_schema.columns where table_schema = 'coffer' and table_name = 'tenants'
           and column_name = 'audit_retention_days'`,
      );
      await c.query('rollback');
      return { retention: retention.rows, head: head.rows[0], column: column.rowCount };
    });
    expect(Object.fromEntries(state.retention.map((r) => [r.tenant_id, r.days]))).toEqual({
      [tenant.a]: 30,
      [tenant.b]: 3650,
      [tenant.d]: 30,
    });
    expect(state.column).toBe(0);
    expect(state.head).toMatchObject({ seq: String(OLD_EVENTS), keyed_from: String(OLD_EVENTS + 1), mac: null });
  });

  it('a token issued before the upgrade verifies the old chain on its first request after it, and after', async () => {
    if (!t) throw new Error('no app');
    const { app, config } = t;
    // Signed as a login before the upgrade signed it: the tenant has had no event since the migration.
    const now = Math.floor(Date.now() / 1000);
    const jwks = (await app.inject({ url: '/.well-known/jwks.json' })).json() as { keys: { kid: string }[] };
    const token = craftJwt(
      { alg: 'EdDSA', typ: 'JWT', kid: jwks.keys[0]?.kid },
      {
        sub: auditorId,
        tid: tenant.a,
        role: 'auditor',
        cv: 1,
        jti: randomUUID(),
        iss: config.jwtIssuer,
        aud: config.jwtAudience,
        iat: now - 60,
        exp: now + 300,
      },
      ed25519Signer(inject('jwtPrivateKeyPem')),
    );
    const verify = async () =>
      expectOk(await app.inject({ url: '/v1/audit/verify', headers: bearer(token) }), 200, AuditVerifyResult);
    // As the server does at start: the rows made before the row MACs get theirs before the first request, and the
    // tenant's chain gains the backfill's event, the first keyed link after the old ones.
    await backfillRowMacs(t.db, t.macs, linkKeys(testKeyring()));
    expect(await verify()).toMatchObject({ ok: true, checked: OLD_EVENTS + 2 });
    expect(await verify()).toMatchObject({ ok: true, checked: OLD_EVENTS + 3 });
  });
});
