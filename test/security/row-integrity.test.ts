import { randomUUID } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type CreateIdentityResponse, SecretWithValue } from '@coffer/contracts';
import pg from 'pg';
import { describe, expect, inject, it } from 'vitest';
import { linkKeys } from '../../apps/api/src/audit/audit.digest.ts';
import { parseKeyring } from '../../apps/api/src/config.ts';
import { hashClientSecret } from '../../apps/api/src/crypto/client-secret-hash.ts';
import { dataKeyContext, MasterKeyring, newDataKey } from '../../apps/api/src/crypto/keyring.ts';
import type { RowMacs } from '../../apps/api/src/crypto/row-macs.ts';
import { findMigrationsFolder } from '../../apps/api/src/db/migrate.ts';
import { backfillRowMacs } from '../../apps/api/src/db/row-mac-backfill.ts';
import { legacyBindingLine, PGP_OPTIONS } from '../../apps/api/src/secrets/secrets.queries.ts';
import { testKeyring } from '../support/audit.ts';
import { migrateScratch, withClient } from '../support/db.ts';
import { bearer, createIdentity, createTenant, login } from '../support/factories.ts';
import { githubClaims, mint, signingKey } from '../support/issuers.ts';
import { expectError, expectOk, secretsApi } from '../support/secrets.ts';
import { scratchDatabase } from '../support/server-process.ts';
import { ownerSuite, tenantCtx } from '../support/suite.ts';
import { createTestApp, type TestApp } from '../support/test-app.ts';

// The attacks of a compromised API host: it holds coffer_app's credentials and edits rows under RLS directly.
let t: TestApp;
let owner: pg.Client;
let root: string;
const GITHUB = 'https://token.actions.githubusercontent.com';

ownerSuite((s) => {
  ({ t, owner, root } = s);
});

/** One statement as coffer_app, in the tenant's scope, as an attacker with the app's credentials would run it. */
async function asApp(tenantId: string, text: string, params: unknown[]): Promise<number> {
  const c = new pg.Client({ connectionString: inject('appDatabaseUrl') });
  await c.connect();
  try {
    await c.query('begin');
    await c.query("select set_config('app.tenant_id', $1, true)", [tenantId]);
    const res = await c.query(text, params);
    await c.query('commit');
    return res.rowCount ?? 0;
  } finally {
    await c.end();
  }
}

/** The API's MACs, to stand in for a legitimate write the API has no route for at the wanted moment. */
const apiMacs = (): RowMacs => t.macs;

async function integrityAudited(tenantId: string, requestId: string, action: string): Promise<void> {
  const { rows } = await owner.query(
    'select action, outcome, error_code from coffer.audit_events where tenant_id = $1 and request_id = $2',
    [tenantId, requestId],
  );
  expect(rows).toContainEqual({ action, outcome: 'error', error_code: 'integrity_error' });
}

describe('a holder of coffer_app’s credentials cannot move or rewind a secret', () => {
  it('renaming a secret row to a path the service may read answers integrity_error, never the value', async () => {
    const { tid, tenant, api } = await tenantCtx(t, root);
    expect((await api.put('shared/payments/STRIPE_KEY', { value: 'sk_live_stripe' })).statusCode).toBe(201);
    const svc = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      policies: [{ path: 'sandbox/sbx-1/*', capabilities: ['read', 'list'] }],
    });
    const sapi = secretsApi(t.app, svc.token);
    expectError(await sapi.get('shared/payments/STRIPE_KEY'), 403, 'forbidden');

    const moved = await asApp(
      tid,
      "update coffer.secrets set kind = 'sandbox', owner = 'sbx-1', name = 'HARMLESS' where name = 'STRIPE_KEY'",
      [],
    );
    expect(moved).toBe(1);
    const res = await sapi.get('sandbox/sbx-1/HARMLESS');
    const err = expectError(res, 500, 'integrity_error');
    expect(res.body).not.toContain('sk_live_stripe');
    await integrityAudited(tid, err.requestId, 'secrets.read');
    const bundle = await sapi.bundle('sandbox', 'sbx-1');
    expectError(bundle, 500, 'integrity_error');
    expect(bundle.body).not.toContain('sk_live_stripe');
  });

  it('rewinding current_version in SQL answers integrity_error, never the old value', async () => {
    const { tid, api } = await tenantCtx(t, root);
    await api.put('sandbox/c/DB_PASSWORD', { value: 'leaked-old-password' });
    await api.put('sandbox/c/DB_PASSWORD', { value: 'fresh-password' });
    expect(await asApp(tid, "update coffer.secrets set current_version = 1 where name = 'DB_PASSWORD'", [])).toBe(1);
    const res = await api.get('sandbox/c/DB_PASSWORD');
    const err = expectError(res, 500, 'integrity_error');
    expect(res.body).not.toContain('leaked-old-password');
    await integrityAudited(tid, err.requestId, 'secrets.read');
    const bundle = await api.bundle('sandbox', 'c');
    expectError(bundle, 500, 'integrity_error');
    expect(bundle.body).not.toContain('leaked-old-password');
  });

  it('extending a rotated-out version’s grace period or lifting an expiry in SQL answers integrity_error', async () => {
    const { tid, api } = await tenantCtx(t, root);
    await api.put('sandbox/c/ROTATED', { value: 'superseded-value' });
    await api.put('sandbox/c/ROTATED', { value: 'current-value' });
    // As a finished rotation leaves it, MAC included: the old version was served until an hour ago.
    const { rows } = await owner.query<{ id: string }>(
      "select id from coffer.secrets where tenant_id = $1 and name = 'ROTATED'",
      [tid],
    );
    const secretId = rows[0]?.id as string;
    const until = new Date(Date.now() - 3_600_000);
    await owner.query(
      'update coffer.secret_versions set served_until = $2, mac = $3 where secret_id = $1 and version = 1',
      [
        secretId,
        until,
        apiMacs().version({
          tenantId: tid,
          secretId,
          version: 1,
          servedUntil: until,
          revokedAt: null,
          deploymentId: null,
        }),
      ],
    );
    expectError(await api.get('sandbox/c/ROTATED', 1), 410, 'gone');
    expect(
      await asApp(tid, 'update coffer.secret_versions set served_until = null where version = 1 and secret_id = $1', [
        secretId,
      ]),
    ).toBe(1);
    const res = await api.get('sandbox/c/ROTATED', 1);
    expectError(res, 500, 'integrity_error');
    expect(res.body).not.toContain('superseded-value');

    await api.put('sandbox/c/EXPIRING', {
      value: 'expired-value',
      expiresAt: new Date(Date.now() + 1500).toISOString(),
    });
    await new Promise((resolve) => setTimeout(resolve, 1600));
    expectError(await api.get('sandbox/c/EXPIRING'), 410, 'expired');
    expect(await asApp(tid, "update coffer.secrets set expires_at = null where name = 'EXPIRING'", [])).toBe(1);
    const lifted = await api.get('sandbox/c/EXPIRING');
    expectError(lifted, 500, 'integrity_error');
    expect(lifted.body).not.toContain('expired-value');
  });

  it('the API’s own writes keep reads working: write, patch, rotate-free restore', async () => {
    const { api } = await tenantCtx(t, root);
    await api.put('sandbox/c/OK', { value: 'one' });
    await api.put('sandbox/c/OK', { value: 'two' });
    expect(expectOk(await api.get('sandbox/c/OK'), 200, SecretWithValue).value).toBe('two');
    expect(expectOk(await api.get('sandbox/c/OK', 1), 200, SecretWithValue).value).toBe('one');
  });
});

describe('a holder of coffer_app’s credentials cannot widen an identity', () => {
  it('widening an identity’s policies in SQL is refused (integrity_error) and audited', async () => {
    const { tid, tenant, api } = await tenantCtx(t, root);
    await api.put('shared/payments/STRIPE_KEY', { value: 'sk_live_policies' });
    const svc = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      policies: [{ path: 'sandbox/sbx-1/*', capabilities: ['read'] }],
    });
    const changed = await asApp(
      tid,
      `update coffer.identities set policies = '[{"path":"**","capabilities":["read","list","write","rotate","delete"]}]'::jsonb where id = $1`,
      [svc.identity.id],
    );
    expect(changed).toBe(1);
    const res = await secretsApi(t.app, svc.token).get('shared/payments/STRIPE_KEY');
    expect(res.body).not.toContain('sk_live_policies');
    const err = expectError(res, 500, 'integrity_error');
    await integrityAudited(tid, err.requestId, 'secrets.read');
    // Logging in again does not launder the row either.
    const again = await t.app.inject({
      method: 'POST',
      url: '/v1/auth/token',
      payload: { clientId: svc.identity.clientId, clientSecret: svc.clientSecret },
    });
    expect(again.statusCode).toBe(500);
    expect(again.json().error.code).toBe('integrity_error');
  });

  it('changing an identity’s role or secret hash in SQL is refused (integrity_error) and audited', async () => {
    const { tid, tenant } = await tenantCtx(t, root);
    const svc = await createIdentity(t.app, tenant.adminToken, { role: 'service', policies: [] });
    expect(await asApp(tid, "update coffer.identities set role = 'admin' where id = $1", [svc.identity.id])).toBe(1);
    const res = await t.app.inject({ method: 'GET', url: '/v1/identities', headers: bearer(svc.token) });
    expect(res.statusCode).toBe(500);
    expect(res.json().error.code).toBe('integrity_error');

    // The hash of a secret the attacker knows, copied from another identity, does not log in as the victim.
    const mine = await createIdentity(t.app, tenant.adminToken, { role: 'service', policies: [] });
    const victim = await createIdentity(t.app, tenant.adminToken, { role: 'admin' });
    expect(
      await asApp(
        tid,
        'update coffer.identities set secret_hash = (select secret_hash from coffer.identities where id = $2) where id = $1',
        [victim.identity.id, mine.identity.id],
      ),
    ).toBe(1);
    await expect(login(t.app, victim.identity.clientId, mine.clientSecret)).rejects.toThrow();
    const { rows } = await owner.query(
      "select count(*)::int as n from coffer.audit_events where tenant_id = $1 and error_code = 'integrity_error'",
      [tid],
    );
    expect(rows[0]?.n).toBeGreaterThanOrEqual(2);
  });
});

describe('a holder of coffer_app’s credentials cannot rebind a federated identity', () => {
  it('rebinding a federated identity to another repository in SQL refuses every exchange (integrity_error), audited', async () => {
    const tenant = await createTenant(t.app, root);
    const tid = tenant.tenant.id;
    const key = await signingKey('ES256');
    const post = (url: string, payload: object) =>
      t.app.inject({ method: 'POST', url, headers: bearer(tenant.adminToken), payload });
    expect(
      (await post('/v1/trust/issuers', { name: 'gha', issuer: GITHUB, jwks: { keys: [key.publicJwk] } })).statusCode,
    ).toBe(201);
    const created = await post('/v1/identities', {
      name: 'deployer',
      role: 'service',
      policies: [{ path: 'shared/acme/*', capabilities: ['read'] }],
      federation: [{ issuer: 'gha', claims: { repository: 'acme/api', ref: 'refs/heads/main' } }],
    });
    expect(created.statusCode, created.body).toBe(201);
    const identity = (created.json() as CreateIdentityResponse).identity;
    const audience = `coffer:${tenant.tenant.slug}`;
    const exchange = async (repo: string) =>
      t.app.inject({
        method: 'POST',
        url: '/v1/auth/token',
        payload: {
          identity: identity.clientId,
          subjectToken: await mint(key, githubClaims(repo, 'refs/heads/main', audience)),
        },
      });
    expect((await exchange('acme/api')).statusCode).toBe(200);
    // The attacker's own repository on the same issuer: not bound, so refused.
    expect((await exchange('mallory/fork')).statusCode).toBe(401);

    // An UPDATE bumps the revision (a trigger), which the MAC covers; so the attacker writes the row again instead:
    // delete it and insert it with the same id, revision and MAC, only the binding changed.
    const rebound = await asApp(
      tid,
      `with old as (delete from coffer.identities where id = $1 returning *)
       insert into coffer.identities
       select (jsonb_populate_record(null::coffer.identities,
         to_jsonb(old) || jsonb_build_object('federation', $2::jsonb))).* from old`,
      [identity.id, JSON.stringify([{ issuer: 'gha', claims: { repository: 'mallory/fork' } }])],
    );
    expect(rebound).toBe(1);
    const { rows: after } = await owner.query('select federation from coffer.identities where id = $1', [identity.id]);
    expect(after[0]?.federation).toEqual([{ issuer: 'gha', claims: { repository: 'mallory/fork' } }]);
    const res = await exchange('mallory/fork');
    expect(res.statusCode).toBe(500);
    expect(res.json().error.code).toBe('integrity_error');
    await integrityAudited(tid, res.json().error.requestId, 'auth.token');
    // The row acts for nobody until an admin writes it again through the API: the rightful workload is refused too.
    expect((await exchange('acme/api')).json().error.code).toBe('integrity_error');
  });
});

describe('a holder of coffer_app’s credentials cannot swap a trusted issuer’s keys', () => {
  it('replacing a trusted issuer’s keys in SQL refuses the exchange (integrity_error), audited, and no token is issued', async () => {
    const tenant = await createTenant(t.app, root);
    const tid = tenant.tenant.id;
    const key = await signingKey('ES256');
    const mallory = await signingKey('ES256');
    const post = (url: string, payload: object) =>
      t.app.inject({ method: 'POST', url, headers: bearer(tenant.adminToken), payload });
    const issuer = await post('/v1/trust/issuers', { name: 'gha', issuer: GITHUB, jwks: { keys: [key.publicJwk] } });
    expect(issuer.statusCode).toBe(201);
    const created = await post('/v1/identities', {
      name: 'deployer',
      role: 'service',
      federation: [{ issuer: 'gha', claims: { repository: 'acme/api' } }],
    });
    const identity = (created.json() as CreateIdentityResponse).identity;
    const audience = `coffer:${tenant.tenant.slug}`;
    const exchange = async (signer: typeof key) =>
      t.app.inject({
        method: 'POST',
        url: '/v1/auth/token',
        payload: {
          identity: identity.clientId,
          subjectToken: await mint(signer, githubClaims('acme/api', 'refs/heads/main', audience)),
        },
      });
    expect((await exchange(mallory)).statusCode).toBe(401);
    // The binding is untouched; the issuer it names now trusts the attacker's key.
    expect(
      await asApp(tid, 'update coffer.trusted_issuers set jwks = $2::jsonb, updated_at = now() where id = $1', [
        (issuer.json() as { id: string }).id,
        JSON.stringify({ keys: [mallory.publicJwk] }),
      ]),
    ).toBe(1);
    const res = await exchange(mallory);
    expect(res.statusCode).toBe(500);
    expect(res.json().error.code).toBe('integrity_error');
    expect(res.body).not.toContain('accessToken');
    await integrityAudited(tid, res.json().error.requestId, 'auth.token');
  });
});

describe('rows that predate the row MACs', () => {
  it('a row with no MAC is refused unless the migration listed it, and the start-up backfill MACs only listed rows', async () => {
    const { tid, api } = await tenantCtx(t, root);
    await api.put('sandbox/c/LEGACY', { value: 'legacy-value' });
    await api.put('sandbox/c/STRIPPED', { value: 'stripped-value' });
    // As a database migrated from before the MACs holds them: no MAC at all.
    await owner.query("update coffer.secrets set mac = null where tenant_id = $1 and name in ('LEGACY', 'STRIPPED')", [
      tid,
    ]);
    expectError(await api.get('sandbox/c/LEGACY'), 500, 'integrity_error');
    // Only the owner (as the `row_macs` migration does) can list a row for the backfill; coffer_app cannot add one.
    await owner.query(
      "insert into coffer.row_mac_backfill (tenant_id, row_kind, row_id) select tenant_id, 'secret', id from coffer.secrets where tenant_id = $1 and name = 'LEGACY'",
      [tid],
    );
    await expect(
      asApp(
        tid,
        "insert into coffer.row_mac_backfill (tenant_id, row_kind, row_id) select tenant_id, 'secret', id from coffer.secrets where name = 'STRIPPED'",
        [],
      ),
    ).rejects.toThrow(/permission denied/);
    await backfillRowMacs(t.db, apiMacs(), linkKeys(testKeyring()));
    expect(expectOk(await api.get('sandbox/c/LEGACY'), 200, SecretWithValue).value).toBe('legacy-value');
    const stripped = await api.get('sandbox/c/STRIPPED');
    expectError(stripped, 500, 'integrity_error');
    expect(stripped.body).not.toContain('stripped-value');
    const { rows } = await owner.query('select 1 from coffer.row_mac_backfill where tenant_id = $1', [tid]);
    expect(rows).toEqual([]);
    // What the backfill blessed is in the tenant's audit chain (the owner, too, can list rows).
    const { rows: events } = await owner.query(
      "select details from coffer.audit_events where tenant_id = $1 and action = 'system.row_macs.backfill'",
      [tid],
    );
    expect(events).toEqual([
      { details: { secrets: 1, versions: 0, identities: 0, issuers: 0, deployments: 0, unverified: 0 } },
    ]);
  });
});

describe('a database at the last migration before the row MACs', () => {
  it('migrates with its rows listed, and after the start-up backfill its secret, bundle and logins work', async () => {
    // The migrations up to 0015 (the audit's trust, the head before the MACs), in a folder of their own.
    const folder = findMigrationsFolder();
    const before = mkdtempSync(path.join(os.tmpdir(), 'coffer-pre-macs-'));
    cpSync(folder, before, { recursive: true });
    const journal = JSON.parse(readFileSync(path.join(folder, 'meta', '_journal.json'), 'utf8')) as {
      entries: { tag: string }[];
    };
    const last = journal.entries.findIndex((e) => e.tag === '0015_audit_trust');
    expect(last).toBeGreaterThan(0);
    writeFileSync(
      path.join(before, 'meta', '_journal.json'),
      JSON.stringify({ ...journal, entries: journal.entries.slice(0, last + 1) }),
    );
    const scratch = await scratchDatabase();
    let old: TestApp | undefined;
    try {
      await migrateScratch(scratch.ownerUrl, before);
      const keyring = new MasterKeyring(parseKeyring(inject('masterKeys'), 'test', []) ?? []);
      const tid = randomUUID();
      const adminId = randomUUID();
      const secretId = randomUUID();
      const adminSecret = `pre-${randomUUID()}`;
      const dek = newDataKey();
      const wrapped = keyring.wrap(dek, dataKeyContext(tid, 1));
      // What the API wrote before the MACs: a tenant, its key, a trusted issuer, a federated admin, a secret sealed with the v1 binding.
      await withClient(scratch.ownerUrl, async (c) => {
        await c.query('begin');
        await c.query("select set_config('app.tenant_id', $1, true)", [tid]);
        await c.query("insert into coffer.tenants (id, slug, name) values ($1, $2, 'pre-macs')", [
          tid,
          `pre-${tid.slice(0, 8)}`,
        ]);
        await c.query(
          "insert into coffer.tenant_keys (tenant_id, version, wrapped_key, master_key_id, state) values ($1, 1, $2, $3, 'active')",
          [tid, wrapped.wrapped, wrapped.masterKeyId],
        );
        await c.query(
          `insert into coffer.identities (id, tenant_id, client_id, name, role, secret_hash, federation)
           values ($1, $2, $3, 'pre-admin', 'admin', $4, '[{"issuer":"gha","subject":"repo:acme/api:ref:refs/heads/main"}]')`,
          [adminId, tid, `pre-admin-${tid.slice(0, 8)}`, await hashClientSecret(adminSecret)],
        );
        await c.query(
          `insert into coffer.trusted_issuers (id, tenant_id, name, issuer, jwks, audiences, algorithms,
             max_token_age_seconds, clock_skew_seconds)
           values ($1, $2, 'gha', 'https://token.actions.githubusercontent.com', '{"keys": []}', '{coffer:pre}', '{ES256}', 600, 30)`,
          [randomUUID(), tid],
        );
        await c.query(
          "insert into coffer.secrets (id, tenant_id, kind, owner, name, current_version) values ($1, $2, 'shared', 'app', 'LEGACY', 1)",
          [secretId, tid],
        );
        await c.query(
          `insert into coffer.secret_versions (tenant_id, secret_id, version, ciphertext, dek_version)
           values ($1, $2, 1, pgp_sym_encrypt($3, $4, $5), 1)`,
          [tid, secretId, `${legacyBindingLine(tid, secretId, 1)}pre-macs-value`, dek.toString('hex'), PGP_OPTIONS],
        );
        await c.query('commit');
      });
      dek.fill(0);

      await migrateScratch(scratch.ownerUrl);
      const listed = await withClient(scratch.ownerUrl, async (c) => {
        await c.query("select set_config('app.tenant_id', $1, false)", [tid]);
        return (await c.query('select row_kind from coffer.row_mac_backfill order by 1')).rows.map((r) => r.row_kind);
      });
      expect(listed).toEqual(['identity', 'issuer', 'secret', 'version']);

      old = await createTestApp({ DATABASE_URL: scratch.ownerUrl, DATABASE_APP_URL: scratch.appUrl });
      const clientId = `pre-admin-${tid.slice(0, 8)}`;
      const tryLogin = () =>
        old?.app.inject({ method: 'POST', url: '/v1/auth/token', payload: { clientId, clientSecret: adminSecret } });
      // Until the backfill has run (the server runs it before it listens), a listed row is not yet trusted.
      expect((await tryLogin())?.json().error.code).toBe('integrity_error');
      expect(await backfillRowMacs(old.db, old.macs, linkKeys(testKeyring()))).toEqual({ tenants: 1, rows: 4 });
      const token = await login(old.app, clientId, adminSecret);
      const oldApi = secretsApi(old.app, token);
      expect(expectOk(await oldApi.get('shared/app/LEGACY'), 200, SecretWithValue).value).toBe('pre-macs-value');
      expect((await oldApi.bundle('shared', 'app')).json().values).toEqual({ LEGACY: 'pre-macs-value' });
      // The issuer was MACed too: it is checked before any federated login is verified against it.
      const { rows: issuers } = await withClient(scratch.ownerUrl, async (c) => {
        await c.query("select set_config('app.tenant_id', $1, false)", [tid]);
        return c.query('select mac from coffer.trusted_issuers');
      });
      expect(issuers[0]?.mac).toMatch(/\.[A-Za-z0-9_-]{43}$/);
      // A second start finds nothing left to do.
      expect(await backfillRowMacs(old.db, old.macs, linkKeys(testKeyring()))).toEqual({ tenants: 0, rows: 0 });
    } finally {
      await old?.close();
      await scratch.drop();
      rmSync(before, { recursive: true, force: true });
    }
  });
});
