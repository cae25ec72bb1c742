import { createHmac, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  Bundle,
  CheckResponse,
  CreatedDeployment,
  Deployment,
  DeploymentPlan,
  Environment,
  EnvironmentDiff,
  PromoteResponse,
  RevokedDeployment,
  RewrapResponse,
  RotationStatus,
  SecretMetadata,
  SecretWithValue,
} from '@coffer/contracts';
import pg from 'pg';
import pino from 'pino';
import { describe, expect, inject, it } from 'vitest';
import { linkKeys } from '../../apps/api/src/audit/audit.digest.ts';
import { ROW_MAC_PURPOSE } from '../../apps/api/src/crypto/row-macs.ts';
import { findMigrationsFolder } from '../../apps/api/src/db/migrate.ts';
import { backfillRowMacs } from '../../apps/api/src/db/row-mac-backfill.ts';
import { ensurePlatformAdmin } from '../../apps/api/src/tenants/bootstrap.ts';
import { testKeyring } from '../support/audit.ts';
import { migrateScratch, withClient } from '../support/db.ts';
import { rootToken } from '../support/factories.ts';
import { newMasterKey, opsApi } from '../support/ops.ts';
import { expectError, expectOk, sender } from '../support/secrets.ts';
import { scratchDatabase } from '../support/server-process.ts';
import { ownerSuite, tenantCtx } from '../support/suite.ts';
import { createTestApp, type TestApp } from '../support/test-app.ts';

// Since deployments arrived, what a deployment does with a secret (its class and strategy), who owns it, a version's
// revocation and deployment, and the deployments themselves decide what is served. A compromised API host holds
// coffer_app's credentials and edits those rows under RLS directly: each edit must fail its row MAC on use.
let t: TestApp;
let owner: pg.Client;
let root: string;
ownerSuite((s) => ({ t, owner, root } = s));

const v = (label: string) => `${label}-${randomBytes(8).toString('hex')}`;
const S = '/v1/secrets/sandbox/app';

/** One statement as coffer_app, in the tenant's scope, as an attacker with the app's credentials would run it. */
async function asApp(
  tenantId: string,
  text: string,
  params: unknown[] = [],
  url = inject('appDatabaseUrl'),
): Promise<number> {
  const c = new pg.Client({ connectionString: url });
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

async function integrityAudited(db: pg.Client, tenantId: string, requestId: string, action: string): Promise<void> {
  const { rows } = await db.query(
    'select action, outcome, error_code from coffer.audit_events where tenant_id = $1 and request_id = $2',
    [tenantId, requestId],
  );
  expect(rows).toContainEqual({ action, outcome: 'error', error_code: 'integrity_error' });
}

/**
 * A tenant whose `sandbox/app` in `staging` holds an infrastructure secret (stripped from desktops), a service secret
 * (generated for each local deployment) and one without a class (injected everywhere).
 */
async function world(on: TestApp = t, rootOf = root) {
  const ctx = await tenantCtx(on, rootOf);
  const admin = sender(on.app, ctx.tenant.adminToken);
  expectOk(await admin('POST', '/v1/environments', { slug: 'staging', name: 'Staging' }), 201, Environment);
  const values = { DATABASE_URL: v('postgres://app:pw@db'), SESSION_KEY: v('sk'), TELEMETRY_KEY: v('telemetry') };
  const put = async (name: keyof typeof values, body: Record<string, unknown>) =>
    expectOk(await admin('PUT', `${S}/${name}?env=staging`, { value: values[name], ...body }), 201, SecretMetadata);
  await put('DATABASE_URL', { class: 'infrastructure', ownerTeam: 'platform', contact: '#platform-oncall' });
  await put('SESSION_KEY', { class: 'service', rotation: { intervalDays: 30 } });
  await put('TELEMETRY_KEY', {});
  const deploy = async (tier: string) =>
    expectOk(
      await admin('POST', '/v1/deployments', {
        name: `${tier}-${randomBytes(3).toString('hex')}`,
        environment: 'staging',
        tier,
        bundles: ['sandbox/app'],
      }),
      201,
      CreatedDeployment,
    );
  const run = (id: string) => admin('GET', `/v1/bundles/sandbox/app?env=staging&deployment=${id}`);
  return { ...ctx, admin, values, deploy, run };
}

async function secretIdOf(db: pg.Client, tenantId: string, name: string): Promise<string> {
  const { rows } = await db.query<{ id: string }>('select id from coffer.secrets where tenant_id = $1 and name = $2', [
    tenantId,
    name,
  ]);
  return rows[0]?.id as string;
}

/** No value of `values` in a response body. */
function leaksNone(body: string, values: Record<string, string>): void {
  for (const value of Object.values(values)) expect(body).not.toContain(value);
}

describe('a holder of coffer_app’s credentials cannot change what deployments do with a secret', () => {
  it.each([
    ['class', 'class = null', 'its strip becomes an inject'],
    ['strategy', `strategy = '{"desktop": {"action": "inject"}}'::jsonb`, 'a strategy overrides its class to inject'],
    ['owner_team', "owner_team = 'mallory'", 'the inventory names another team'],
    ['contact', "contact = 'mallory@example.com'", 'the inventory names another contact'],
  ])(
    'editing secrets.%s in SQL (%s: %s) refuses plans, deployments, reads and bundles of it (integrity_error), audited, and ships nothing',
    async (_column, set) => {
      const { tid, admin, values } = await world();
      const before = expectOk(
        await admin('POST', '/v1/deployments/plan', {
          environment: 'staging',
          tier: 'desktop',
          bundles: ['sandbox/app'],
        }),
        200,
        DeploymentPlan,
      );
      expect(before.plan.find((i) => i.path === 'sandbox/app/DATABASE_URL')?.action).toBe('strip');

      expect(await asApp(tid, `update coffer.secrets set ${set} where name = 'DATABASE_URL'`)).toBe(1);
      const plan = await admin('POST', '/v1/deployments/plan', {
        environment: 'staging',
        tier: 'desktop',
        bundles: ['sandbox/app'],
      });
      const err = expectError(plan, 500, 'integrity_error');
      await integrityAudited(owner, tid, err.requestId, 'deployments.plan');
      const created = await admin('POST', '/v1/deployments', {
        name: 'desk',
        environment: 'staging',
        tier: 'desktop',
        bundles: ['sandbox/app'],
      });
      expectError(created, 500, 'integrity_error');
      leaksNone(created.body, values);
      const { rows } = await owner.query('select 1 from coffer.deployments where tenant_id = $1', [tid]);
      expect(rows).toEqual([]);
      const read = await admin('GET', `${S}/DATABASE_URL?env=staging`);
      await integrityAudited(owner, tid, expectError(read, 500, 'integrity_error').requestId, 'secrets.read');
      leaksNone(read.body, values);
      const bundle = await admin('GET', '/v1/bundles/sandbox/app?env=staging');
      expectError(bundle, 500, 'integrity_error');
      leaksNone(bundle.body, values);
    },
  );
});

describe('check runs, diffs and promotions check the deployment columns too', () => {
  it('they pass on rows the API wrote with deployment columns set, and refuse one edited in SQL (integrity_error), no value', async () => {
    const { tid, admin, values, deploy } = await world();
    expectOk(await admin('POST', '/v1/environments', { slug: 'production', name: 'Production' }), 201, Environment);
    // A revoked previous version and a generated current one: every covered column is set somewhere.
    const older = await deploy('local');
    await deploy('local');
    expectOk(await admin('POST', `/v1/deployments/${older.id}/revoke`, {}), 200, RevokedDeployment);
    const manifest = {
      secrets: ['DATABASE_URL', 'SESSION_KEY', 'TELEMETRY_KEY'].map((n) => ({ path: `sandbox/app/${n}` })),
    };
    const checked = expectOk(await admin('POST', '/v1/check?env=staging', manifest), 200, CheckResponse);
    expect(checked.results.map((r) => r.status)).toEqual(['ok', 'ok', 'ok']);
    const diff = `/v1/environments/diff?from=staging&to=production&kind=sandbox&owner=app`;
    expectOk(await admin('GET', diff), 200, EnvironmentDiff);
    const promote = { from: 'staging', to: 'production', kind: 'sandbox', owner: 'app', names: ['DATABASE_URL'] };
    expectOk(await admin('POST', '/v1/environments/promote', promote), 200, PromoteResponse);

    expect(
      await asApp(
        tid,
        "update coffer.secrets set class = 'user' where name = 'SESSION_KEY' and environment = 'staging'",
      ),
    ).toBe(1);
    const run = await admin('POST', '/v1/check?env=staging', manifest);
    expectError(run, 500, 'integrity_error');
    leaksNone(run.body, values);
    const promoted = await admin('POST', '/v1/environments/promote', { ...promote, names: ['SESSION_KEY'] });
    expectError(promoted, 500, 'integrity_error');
    leaksNone(promoted.body, values);
  });
});

describe('a holder of coffer_app’s credentials cannot move a version between deployments or forge its revocation', () => {
  it('clearing or changing a generated version’s deployment_id refuses its reads, the deployment’s reads and its revocation', async () => {
    const { tid, admin, deploy, run } = await world();
    const other = await deploy('local');
    const d = await deploy('local');
    const generated = d.generated.SESSION_KEY as string;
    const secretId = await secretIdOf(owner, tid, 'SESSION_KEY');
    const version = d.plan.find((i) => i.path === 'sandbox/app/SESSION_KEY')?.version as number;
    expect(expectOk(await run(d.id), 200, Bundle).values.SESSION_KEY).toBe(generated);

    const setDeployment = (id: string | null) =>
      asApp(tid, 'update coffer.secret_versions set deployment_id = $3 where secret_id = $1 and version = $2', [
        secretId,
        version,
        id,
      ]);
    for (const moved of [null, other.id]) {
      // Unlinked from its deployment, the version would escape that deployment's revocation; linked to another, it
      // would be revoked with the wrong one.
      expect(await setDeployment(moved)).toBe(1);
      const read = await admin('GET', `${S}/SESSION_KEY?env=staging`);
      expectError(read, 500, 'integrity_error');
      expect(read.body).not.toContain(generated);
      const ran = await run(d.id);
      await integrityAudited(owner, tid, expectError(ran, 500, 'integrity_error').requestId, 'bundles.read');
      expect(ran.body).not.toContain(generated);
      const revoked = await admin('POST', `/v1/deployments/${d.id}/revoke`, {});
      await integrityAudited(owner, tid, expectError(revoked, 500, 'integrity_error').requestId, 'deployments.revoke');
      const { rows } = await owner.query('select revoked_at from coffer.deployments where id = $1', [d.id]);
      expect(rows).toEqual([{ revoked_at: null }]);
    }
    // Put back as the API wrote it, the version is the deployment's again: the check is exact, not a lock-out.
    expect(await setDeployment(d.id)).toBe(1);
    expect(expectOk(await run(d.id), 200, Bundle).values.SESSION_KEY).toBe(generated);
    expectOk(await admin('POST', `/v1/deployments/${d.id}/revoke`, {}), 200, RevokedDeployment);
  });

  it('marking a generated version revoked in SQL, so the deployment’s revocation would skip it, is refused (integrity_error) everywhere it decides', async () => {
    const { tid, admin, deploy } = await world();
    const older = await deploy('local');
    await deploy('local');
    // older's version is now the previous one, served through its grace period until older is revoked.
    const version = older.plan.find((i) => i.path === 'sandbox/app/SESSION_KEY')?.version as number;
    const value = older.generated.SESSION_KEY as string;
    const secretId = await secretIdOf(owner, tid, 'SESSION_KEY');
    expect(
      expectOk(await admin('GET', `${S}/SESSION_KEY?env=staging&version=${version}`), 200, SecretWithValue).value,
    ).toBe(value);

    expect(
      await asApp(tid, 'update coffer.secret_versions set revoked_at = now() where secret_id = $1 and version = $2', [
        secretId,
        version,
      ]),
    ).toBe(1);
    // A forged revocation is an incident, not a 410.
    const read = await admin('GET', `${S}/SESSION_KEY?env=staging&version=${version}`);
    await integrityAudited(owner, tid, expectError(read, 500, 'integrity_error').requestId, 'secrets.read');
    expect(read.body).not.toContain(value);
    // The deployment's revocation would have skipped the version (already revoked) and left it served for the grace
    // period once coffer_app lifted the mark again: it refuses instead, and changes nothing.
    expectError(await admin('POST', `/v1/deployments/${older.id}/revoke`, {}), 500, 'integrity_error');
    const { rows } = await owner.query('select revoked_at from coffer.deployments where id = $1', [older.id]);
    expect(rows).toEqual([{ revoked_at: null }]);
    // Revoking the version itself would answer "already revoked"; the rotation status would call it revoked.
    expectError(
      await admin('POST', `${S}/SESSION_KEY/versions/${version}/revoke?env=staging`, { force: true }),
      500,
      'integrity_error',
    );
    expectError(await admin('GET', `${S}/SESSION_KEY/rotation-status?env=staging`), 500, 'integrity_error');

    await asApp(tid, 'update coffer.secret_versions set revoked_at = null where secret_id = $1 and version = $2', [
      secretId,
      version,
    ]);
    expect(
      expectOk(await admin('GET', `${S}/SESSION_KEY/rotation-status?env=staging`), 200, RotationStatus),
    ).toMatchObject({ previous: version, previousRevokedAt: null });
    const revoked = expectOk(await admin('POST', `/v1/deployments/${older.id}/revoke`, {}), 200, RevokedDeployment);
    expect(revoked.revokedVersions).toEqual([{ path: 'sandbox/app/SESSION_KEY', version }]);
  });

  it('lifting a revocation in SQL never serves the revoked value again', async () => {
    const { tid, admin, deploy } = await world();
    const older = await deploy('local');
    await deploy('local');
    const version = older.plan.find((i) => i.path === 'sandbox/app/SESSION_KEY')?.version as number;
    const value = older.generated.SESSION_KEY as string;
    const secretId = await secretIdOf(owner, tid, 'SESSION_KEY');
    expectOk(await admin('POST', `/v1/deployments/${older.id}/revoke`, {}), 200, RevokedDeployment);
    const at = `${S}/SESSION_KEY?env=staging&version=${version}`;
    expect(expectError(await admin('GET', at), 410, 'gone').message).toContain('was revoked at');

    const lift = (set: string) =>
      asApp(tid, `update coffer.secret_versions set ${set} where secret_id = $1 and version = $2`, [secretId, version]);
    // revoked_at alone: served_until (covered all along) ended with the revocation.
    expect(await lift('revoked_at = null')).toBe(1);
    const gone = await admin('GET', at);
    expect(expectError(gone, 410, 'gone').message).toContain('rotated out');
    expect(gone.body).not.toContain(value);
    // And the grace period with it: the version's MAC no longer holds.
    expect(await lift('served_until = null')).toBe(1);
    const lifted = await admin('GET', at);
    await integrityAudited(owner, tid, expectError(lifted, 500, 'integrity_error').requestId, 'secrets.read');
    expect(lifted.body).not.toContain(value);
  });
});

describe('a holder of coffer_app’s credentials cannot change a deployment', () => {
  it('un-revoking a deployment in SQL refuses its reads, its record and its revocation (integrity_error), never a value', async () => {
    const { tid, admin, deploy, run, values } = await world();
    const d = await deploy('local');
    expectOk(await admin('POST', `/v1/deployments/${d.id}/revoke`, {}), 200, RevokedDeployment);
    expectError(await run(d.id), 410, 'gone');

    expect(
      await asApp(tid, 'update coffer.deployments set revoked_at = null, revocation = null where id = $1', [d.id]),
    ).toBe(1);
    const ran = await run(d.id);
    await integrityAudited(owner, tid, expectError(ran, 500, 'integrity_error').requestId, 'bundles.read');
    leaksNone(ran.body, { ...values, generated: d.generated.SESSION_KEY as string });
    expectError(await admin('GET', `/v1/deployments/${d.id}`), 500, 'integrity_error');
    expectError(await admin('POST', `/v1/deployments/${d.id}/revoke`, {}), 500, 'integrity_error');
  });

  it('adding an inject to a deployment’s plan, or moving it to another environment, in SQL refuses its reads (integrity_error)', async () => {
    const { tid, admin, deploy, run, values } = await world();
    expectOk(await admin('POST', '/v1/environments', { slug: 'production', name: 'Production' }), 201, Environment);
    expectOk(
      await admin('PUT', `${S}/TELEMETRY_KEY?env=production`, { value: v('prod-telemetry') }),
      201,
      SecretMetadata,
    );
    const d = await deploy('desktop');
    const plain = expectOk(await run(d.id), 200, Bundle);
    expect(Object.keys(plain.values).sort()).toEqual(['SESSION_KEY', 'TELEMETRY_KEY']);
    const shown = expectOk(await admin('GET', `/v1/deployments/${d.id}`), 200, Deployment);
    expect(shown.plan.find((i) => i.path === 'sandbox/app/DATABASE_URL')?.action).toBe('strip');

    // The infrastructure secret was stripped: coffer_app may insert plan items (it cannot update or delete them).
    const dbId = await secretIdOf(owner, tid, 'DATABASE_URL');
    expect(
      await asApp(
        tid,
        `insert into coffer.deployment_items (tenant_id, deployment_id, position, secret_id, kind, owner, name, action, reason)
         values ($1, $2, 99, $3, 'sandbox', 'app', 'DATABASE_URL', 'inject', 'injected')`,
        [tid, d.id, dbId],
      ),
    ).toBe(1);
    const ran = await run(d.id);
    await integrityAudited(owner, tid, expectError(ran, 500, 'integrity_error').requestId, 'bundles.read');
    leaksNone(ran.body, values);
    expectError(await admin('GET', `/v1/deployments/${d.id}`), 500, 'integrity_error');

    const moved = await deploy('desktop');
    expect(await asApp(tid, "update coffer.deployments set environment = 'production' where id = $1", [moved.id])).toBe(
      1,
    );
    const elsewhere = await admin('GET', `/v1/bundles/sandbox/app?env=production&deployment=${moved.id}`);
    expectError(elsewhere, 500, 'integrity_error');
    expect(elsewhere.body).not.toContain('prod-telemetry');
  });

  it('hiding a live deployment from a version revocation’s consumers check (marking it revoked) is refused (integrity_error)', async () => {
    const { tid, admin, deploy } = await world();
    const first = await deploy('local');
    await deploy('local');
    const version = first.plan.find((i) => i.path === 'sandbox/app/SESSION_KEY')?.version as number;
    const revoke = () => admin('POST', `${S}/SESSION_KEY/versions/${version}/revoke?env=staging`, {});
    expectError(await revoke(), 409, 'consumers_pending');

    expect(await asApp(tid, 'update coffer.deployments set revoked_at = now() where id = $1', [first.id])).toBe(1);
    await integrityAudited(owner, tid, expectError(await revoke(), 500, 'integrity_error').requestId, 'secrets.revoke');
    expectError(await admin('GET', `${S}/SESSION_KEY/rotation-status?env=staging`), 500, 'integrity_error');
    const secretId = await secretIdOf(owner, tid, 'SESSION_KEY');
    const { rows } = await owner.query(
      'select revoked_at from coffer.secret_versions where secret_id = $1 and version = $2',
      [secretId, version],
    );
    expect(rows).toEqual([{ revoked_at: null }]);
  });
});

/** A MAC as the API made it before it covered the deployment columns: a frozen copy of that formula. */
function macBefore(parts: unknown[]): string {
  const keyring = testKeyring();
  const kid = keyring.activeId;
  const key = keyring.deriveFor(kid, ROW_MAC_PURPOSE);
  return `${kid}.${createHmac('sha256', key).update(JSON.stringify(parts)).digest('base64url')}`;
}

interface SecretCols {
  id: string;
  tenant_id: string;
  environment: string;
  kind: string;
  owner: string;
  name: string;
  current_version: number;
  expires_at: Date | null;
  deleted_at: Date | null;
}
const secretMacBefore = (r: SecretCols, currentVersion = r.current_version) =>
  macBefore([
    'secret',
    r.tenant_id,
    r.id,
    r.kind,
    r.owner,
    r.name,
    currentVersion,
    r.expires_at?.toISOString() ?? null,
    r.deleted_at !== null,
    ...(r.environment === 'default' ? [] : [r.environment]),
  ]);
const versionMacBefore = (r: { tenant_id: string; secret_id: string; version: number; served_until: Date | null }) =>
  macBefore(['version', r.tenant_id, r.secret_id, r.version, r.served_until?.toISOString() ?? null]);

describe('rows MACed before the deployment columns were covered', () => {
  it('a secret and its versions whose deployment columns are unset keep the MACs they were given before, and read', async () => {
    const { tid, api, ops } = await tenantCtx(t, root);
    await api.put('sandbox/old/PLAIN', { value: 'first-value', rotation: { intervalDays: 30 } });
    expectOk(await ops.rotate('sandbox/old/PLAIN', { value: 'second-value' }), 200, SecretMetadata);
    const { rows: secrets } = await owner.query<SecretCols & { mac: string }>(
      "select * from coffer.secrets where tenant_id = $1 and name = 'PLAIN'",
      [tid],
    );
    const row = secrets[0] as SecretCols & { mac: string };
    expect(row.mac).toBe(secretMacBefore(row));
    const { rows: versions } = await owner.query(
      'select tenant_id, secret_id, version, served_until, mac from coffer.secret_versions where secret_id = $1 order by version',
      [row.id],
    );
    expect(versions).toHaveLength(2);
    for (const version of versions) expect(version.mac).toBe(versionMacBefore(version));
    expect(expectOk(await api.get('sandbox/old/PLAIN'), 200, SecretWithValue).value).toBe('second-value');
    expect(expectOk(await api.get('sandbox/old/PLAIN', 1), 200, SecretWithValue).value).toBe('first-value');
  });

  it('the deployment_macs migration lists what needs a new MAC, and the start-up backfill MACs it only where the old MAC holds', async () => {
    const scratch = await scratchDatabase();
    let app: TestApp | undefined;
    try {
      await migrateScratch(scratch.ownerUrl);
      app = await createTestApp({ DATABASE_URL: scratch.ownerUrl, DATABASE_APP_URL: scratch.appUrl });
      await ensurePlatformAdmin(app.db, {
        bootstrapSecret: inject('rootSecret'),
        dataDir: os.tmpdir(),
        log: pino({ level: 'silent' }),
        macs: app.macs,
      });
      const { tid, admin, values, deploy, run } = await world(app, await rootToken(app.app));
      const older = await deploy('local');
      const d = await deploy('local');
      expectOk(await admin('POST', `/v1/deployments/${older.id}/revoke`, {}), 200, RevokedDeployment);

      // The rows as the API wrote them before this change: deployments without a MAC, secrets and versions MACed
      // without their deployment columns. And one attacker's edit of a column covered all along (a rewound
      // DATABASE_URL MAC stands for version 0): its old MAC does not hold, so nothing may bless it.
      await withClient(scratch.ownerUrl, async (c) => {
        await c.query('update coffer.deployments set mac = null where tenant_id = $1', [tid]);
        for (const s of (await c.query<SecretCols>('select * from coffer.secrets where tenant_id = $1', [tid])).rows) {
          const mac = s.name === 'DATABASE_URL' ? secretMacBefore(s, 0) : secretMacBefore(s);
          await c.query('update coffer.secrets set mac = $2 where id = $1', [s.id, mac]);
        }
        const { rows: versions } = await c.query(
          'select tenant_id, secret_id, version, served_until from coffer.secret_versions where tenant_id = $1',
          [tid],
        );
        for (const version of versions) {
          await c.query('update coffer.secret_versions set mac = $3 where secret_id = $1 and version = $2', [
            version.secret_id,
            version.version,
            versionMacBefore(version),
          ]);
        }
      });
      // Until the backfill (the server runs it before it listens), those rows fail their checks.
      expectError(await admin('GET', `${S}/SESSION_KEY?env=staging`), 500, 'integrity_error');
      expectError(await run(d.id), 500, 'integrity_error');
      expect(
        expectOk(await admin('GET', `${S}/TELEMETRY_KEY?env=staging`), 200, SecretWithValue).value,
        'a row without deployment columns verifies as it was',
      ).toBe(values.TELEMETRY_KEY);

      // The migration's listing, as it runs when a database reaches it.
      const migration = readFileSync(path.join(findMigrationsFolder(), '0025_deployment_macs.sql'), 'utf8');
      const listing = migration.split('--> statement-breakpoint').at(-1) as string;
      expect(listing).toContain('row_mac_backfill');
      const listed = await withClient(scratch.ownerUrl, async (c) => {
        await c.query(listing);
        return (await c.query('select row_kind, count(*)::int as n from coffer.row_mac_backfill group by 1 order by 1'))
          .rows;
      });
      // Two deployments; DATABASE_URL and SESSION_KEY (TELEMETRY_KEY has no deployment column set); SESSION_KEY's two
      // generated versions (one of them revoked).
      expect(listed).toEqual([
        { row_kind: 'deployment', n: 2 },
        { row_kind: 'secret', n: 2 },
        { row_kind: 'version', n: 2 },
      ]);

      expect(await backfillRowMacs(app.db, app.macs, linkKeys(testKeyring()))).toEqual({ tenants: 1, rows: 6 });
      const session = expectOk(await admin('GET', `${S}/SESSION_KEY?env=staging`), 200, SecretWithValue);
      expect(session.value).toBe(d.generated.SESSION_KEY);
      expect(expectOk(await run(d.id), 200, Bundle).values.SESSION_KEY).toBe(d.generated.SESSION_KEY);
      expectError(await run(older.id), 410, 'gone');
      const olderVersion = older.plan.find((i) => i.path === 'sandbox/app/SESSION_KEY')?.version as number;
      expectError(await admin('GET', `${S}/SESSION_KEY?env=staging&version=${olderVersion}`), 410, 'gone');
      // The edited row stays refused, and the tenant's chain says how many rows were blessed and how many were not.
      const refused = await admin('GET', `${S}/DATABASE_URL?env=staging`);
      expectError(refused, 500, 'integrity_error');
      expect(refused.body).not.toContain(values.DATABASE_URL);
      const events = await withClient(scratch.ownerUrl, async (c) => {
        await c.query("select set_config('app.tenant_id', $1, false)", [tid]);
        return (await c.query("select details from coffer.audit_events where action = 'system.row_macs.backfill'", []))
          .rows;
      });
      expect(events).toEqual([
        { details: { secrets: 2, versions: 2, identities: 0, issuers: 0, deployments: 2, unverified: 1 } },
      ]);
    } finally {
      await app?.close();
      await scratch.drop();
    }
  });
});

describe('master-key rotation re-signs what the deployment MACs cover', () => {
  it('a rewrap re-signs deployments, and secrets and versions with deployment columns, under the new key; an edited deployment keeps failing', async () => {
    // A database of its own: the audit links this test makes under its keys stay out of the run's platform chain.
    const scratch = await scratchDatabase();
    const kOld = newMasterKey('mk-old');
    const kNew = newMasterKey('mk-new');
    const apps: TestApp[] = [];
    const appWith = async (keys: string) => {
      const made = await createTestApp({
        COFFER_MASTER_KEYS: keys,
        DATABASE_URL: scratch.ownerUrl,
        DATABASE_APP_URL: scratch.appUrl,
      });
      apps.push(made);
      return made;
    };
    try {
      await migrateScratch(scratch.ownerUrl);
      const appOld = await appWith(`${kOld.entry},${inject('masterKeys')}`);
      await ensurePlatformAdmin(appOld.db, {
        bootstrapSecret: inject('rootSecret'),
        dataDir: os.tmpdir(),
        log: pino({ level: 'silent' }),
        macs: appOld.macs,
      });
      const w = await world(appOld, await rootToken(appOld.app));
      const older = await w.deploy('local');
      const d = await w.deploy('local');
      const edited = await w.deploy('desktop');
      expectOk(await w.admin('POST', `/v1/deployments/${older.id}/revoke`, {}), 200, RevokedDeployment);
      expect(
        await asApp(w.tid, "update coffer.deployments set tier = 'cloud' where id = $1", [edited.id], scratch.appUrl),
      ).toBe(1);
      const macKeys = async () =>
        withClient(scratch.ownerUrl, async (c) => {
          const q = async (table: string) =>
            (
              await c.query<{ k: string; n: number }>(
                `select substring(mac from '^(.*)\\.[^.]*$') as k, count(*)::int as n from coffer.${table}
                 where tenant_id = $1 group by 1 order by 1`,
                [w.tid],
              )
            ).rows;
          return {
            deployments: await q('deployments'),
            secrets: await q('secrets'),
            versions: await q('secret_versions'),
          };
        });
      expect(await macKeys()).toEqual({
        deployments: [{ k: kOld.id, n: 3 }],
        secrets: [{ k: kOld.id, n: 3 }],
        versions: [{ k: kOld.id, n: 6 }],
      });

      const appNew = await appWith(`${kNew.entry},${kOld.entry}`);
      expectOk(await opsApi(appNew.app, await rootToken(appNew.app)).rewrap(), 200, RewrapResponse);
      // Everything moved but the edited deployment, whose old MAC no longer holds: it is left to fail.
      expect(await macKeys()).toEqual({
        deployments: [
          { k: kNew.id, n: 2 },
          { k: kOld.id, n: 1 },
        ],
        secrets: [{ k: kNew.id, n: 3 }],
        versions: [{ k: kNew.id, n: 6 }],
      });

      // With only the new key, the deployments run, the revoked stay revoked, and the edited one is refused.
      const appOnlyNew = await appWith(kNew.entry);
      const admin = sender(appOnlyNew.app, w.tenant.adminToken);
      const run = (id: string) => admin('GET', `/v1/bundles/sandbox/app?env=staging&deployment=${id}`);
      expect(expectOk(await run(d.id), 200, Bundle).values.SESSION_KEY).toBe(d.generated.SESSION_KEY);
      expectError(await run(older.id), 410, 'gone');
      const olderVersion = older.plan.find((i) => i.path === 'sandbox/app/SESSION_KEY')?.version as number;
      expectError(await admin('GET', `${S}/SESSION_KEY?env=staging&version=${olderVersion}`), 410, 'gone');
      expect(expectOk(await admin('GET', `${S}/DATABASE_URL?env=staging`), 200, SecretWithValue).value).toBe(
        w.values.DATABASE_URL,
      );
      expectError(await run(edited.id), 500, 'integrity_error');
    } finally {
      for (const made of apps) await made.close();
      await scratch.drop();
    }
  });
});
