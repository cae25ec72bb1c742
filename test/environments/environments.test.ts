import { randomBytes } from 'node:crypto';
import {
  AuditPage,
  Bundle,
  BundleWriteResponse,
  Environment,
  EnvironmentDiff,
  EnvironmentList,
  PromoteResponse,
  RotationDue,
  RotationLog,
  SecretMetadata,
  SecretPage,
  SecretVersions,
  SecretWithValue,
} from '@coffer/contracts';
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { createIdentity } from '../support/factories.ts';
import { expectEmpty, expectError, expectOk, sender } from '../support/secrets.ts';
import { leaksIn } from '../support/security.ts';
import { ownerSuite, tenantCtx } from '../support/suite.ts';
import type { TestApp } from '../support/test-app.ts';

let t: TestApp;
let owner: pg.Client;
let root: string;
ownerSuite((s) => ({ t, owner, root } = s));

const v = (label: string) => `${label}-${randomBytes(8).toString('hex')}`;

async function world() {
  const ctx = await tenantCtx(t, root);
  const as = (token: string) => sender(t.app, token);
  const admin = as(ctx.tenant.adminToken);
  const mkEnv = async (slug: string, extra: Record<string, unknown> = {}) =>
    expectOk(await admin('POST', '/v1/environments', { slug, name: slug, ...extra }), 201, Environment);
  return { ...ctx, as, admin, mkEnv };
}

describe('environments: the model', () => {
  it('every tenant has `default`; environments are created, listed, renamed, protected and deleted when empty', async () => {
    const { admin, mkEnv } = await world();
    const first = expectOk(await admin('GET', '/v1/environments'), 200, EnvironmentList);
    expect(first.items.map((e) => [e.slug, e.default, e.protected])).toEqual([['default', true, false]]);

    const staging = await mkEnv('staging');
    expect(staging).toMatchObject({ slug: 'staging', name: 'staging', protected: false, default: false });
    await mkEnv('production', { protected: true });
    expectError(await admin('POST', '/v1/environments', { slug: 'staging', name: 'again' }), 409, 'conflict');
    // Refused, and nothing made: an unknown field, an upper-case slug, an empty name.
    for (const bad of [
      { slug: 'qa', name: 'QA', colour: 'red' },
      { slug: 'QA', name: 'QA' },
      { slug: 'qa', name: '' },
    ]) {
      expectError(await admin('POST', '/v1/environments', bad), 400, 'validation_failed');
    }
    const listed = expectOk(await admin('GET', '/v1/environments'), 200, EnvironmentList);
    expect(listed.items.map((e) => e.slug)).toEqual(['default', 'production', 'staging']);

    const renamed = expectOk(
      await admin('PATCH', '/v1/environments/staging', { name: 'Staging', protected: true }),
      200,
      Environment,
    );
    expect(renamed).toMatchObject({ slug: 'staging', name: 'Staging', protected: true });
    expectError(await admin('PATCH', '/v1/environments/nope', { name: 'x' }), 404, 'not_found');
    expectError(await admin('PATCH', '/v1/environments/staging', { slug: 'other' }), 400, 'validation_failed');

    expectError(await admin('DELETE', '/v1/environments/default'), 409, 'conflict');
    expectOk(await admin('PUT', '/v1/secrets/shared/app/KEY?env=production', { value: v('p') }), 201, SecretMetadata);
    const busy = expectError(await admin('DELETE', '/v1/environments/production'), 409, 'conflict');
    expect(busy.message).toContain('1 secret');
    expectEmpty(await admin('DELETE', '/v1/environments/staging'));
    expectError(await admin('DELETE', '/v1/environments/staging'), 404, 'not_found');
  });

  it('one name holds a value per environment: reads, versions, lists and bundles each see their own', async () => {
    const { admin, mkEnv } = await world();
    await mkEnv('staging');
    const dflt = v('default');
    const stg = v('staging');
    expectOk(await admin('PUT', '/v1/secrets/shared/pay/API_KEY', { value: dflt }), 201, SecretMetadata);
    expectOk(await admin('PUT', '/v1/secrets/shared/pay/API_KEY?env=staging', { value: stg }), 201, SecretMetadata);
    expectOk(
      await admin('PUT', '/v1/secrets/shared/pay/API_KEY?env=staging', { value: `${stg}-2` }),
      200,
      SecretMetadata,
    );
    expectOk(await admin('PUT', '/v1/secrets/shared/pay/ONLY_STG?env=staging', { value: v('x') }), 201, SecretMetadata);

    const a = expectOk(await admin('GET', '/v1/secrets/shared/pay/API_KEY'), 200, SecretWithValue);
    const b = expectOk(await admin('GET', '/v1/secrets/shared/pay/API_KEY?env=default'), 200, SecretWithValue);
    const c = expectOk(await admin('GET', '/v1/secrets/shared/pay/API_KEY?env=staging'), 200, SecretWithValue);
    expect([a.value, a.version, b.value, c.value, c.version]).toEqual([dflt, 1, dflt, `${stg}-2`, 2]);
    const older = expectOk(
      await admin('GET', '/v1/secrets/shared/pay/API_KEY?env=staging&version=1'),
      200,
      SecretWithValue,
    );
    expect(older.value).toBe(stg);
    expectError(await admin('GET', '/v1/secrets/shared/pay/ONLY_STG'), 404, 'not_found');

    const versions = expectOk(
      await admin('GET', '/v1/secrets/shared/pay/API_KEY/versions?env=staging'),
      200,
      SecretVersions,
    );
    expect(versions.items.map((i) => i.version)).toEqual([2, 1]);
    const listD = expectOk(await admin('GET', '/v1/secrets?owner=pay'), 200, SecretPage);
    const listS = expectOk(await admin('GET', '/v1/secrets?owner=pay&env=staging'), 200, SecretPage);
    expect(listD.items.map((i) => i.name)).toEqual(['API_KEY']);
    expect(listS.items.map((i) => i.name)).toEqual(['API_KEY', 'ONLY_STG']);
    const bundle = expectOk(await admin('GET', '/v1/bundles/shared/pay?env=staging'), 200, Bundle);
    expect(bundle.versions).toEqual({ API_KEY: 2, ONLY_STG: 1 });
    expect(bundle.values.API_KEY).toBe(`${stg}-2`);
    const written = expectOk(
      await admin('POST', '/v1/bundles/shared/pay?env=staging', { set: { API_KEY: { value: v('b'), ifVersion: 2 } } }),
      200,
      BundleWriteResponse,
    );
    expect(written).toEqual({ versions: { API_KEY: 3 } });
    // default is untouched by all of it.
    expect(expectOk(await admin('GET', '/v1/secrets/shared/pay/API_KEY'), 200, SecretWithValue).version).toBe(1);

    // Deleting in one environment leaves the other.
    expectEmpty(await admin('DELETE', '/v1/secrets/shared/pay/API_KEY?env=staging'));
    expect(expectOk(await admin('GET', '/v1/secrets/shared/pay/API_KEY'), 200, SecretWithValue).value).toBe(dflt);
    expectOk(await admin('POST', '/v1/secrets/shared/pay/API_KEY/restore?env=staging'), 200, SecretMetadata);

    // An environment that does not exist: nothing to read, and nowhere to write.
    expectError(await admin('GET', '/v1/secrets/shared/pay/API_KEY?env=nowhere'), 404, 'not_found');
    const nowhere = expectError(
      await admin('PUT', '/v1/secrets/shared/pay/API_KEY?env=nowhere', { value: 'x' }),
      404,
      'not_found',
    );
    expect(nowhere.message).toBe('environment nowhere not found');
    expectError(await admin('GET', '/v1/secrets/shared/pay/API_KEY?env=Bad_Slug'), 400, 'validation_failed');
  });

  it('events about a non-default environment name it; the audit log and rotation routes filter by ?env', async () => {
    const { admin, mkEnv } = await world();
    await mkEnv('staging');
    await admin('PUT', '/v1/secrets/shared/aud/K', { value: v('d'), rotation: { intervalDays: 1 } });
    await admin('PUT', '/v1/secrets/shared/aud/K?env=staging', { value: v('s'), rotation: { intervalDays: 1 } });
    await admin('POST', '/v1/secrets/shared/aud/K/rotate?env=staging', { value: v('s2') });
    const writes = (env?: string) =>
      admin('GET', `/v1/audit?action=secrets.write&path=shared/aud/${env ? `&env=${env}` : ''}`);
    const d = expectOk(await writes(), 200, AuditPage).items;
    const s = expectOk(await writes('staging'), 200, AuditPage).items;
    const all = expectOk(await writes('*'), 200, AuditPage).items;
    expect(d.map((e) => e.details?.environment ?? null)).toEqual([null]);
    expect(s.map((e) => e.details?.environment)).toEqual(['staging']);
    expect(all).toHaveLength(2);
    const dueS = expectOk(await admin('GET', '/v1/rotation/due?within=30d&env=staging'), 200, RotationDue);
    const dueD = expectOk(await admin('GET', '/v1/rotation/due?within=30d'), 200, RotationDue);
    expect(dueS.items.map((i) => [i.path, i.lastRotatedAt !== null])).toEqual([['shared/aud/K', true]]);
    expect(dueD.items.map((i) => [i.path, i.lastRotatedAt !== null])).toEqual([['shared/aud/K', false]]);
    const logS = expectOk(await admin('GET', '/v1/rotation/log?env=staging'), 200, RotationLog);
    const logD = expectOk(await admin('GET', '/v1/rotation/log'), 200, RotationLog);
    expect([logS.items.length, logD.items.length]).toEqual([1, 0]);
  });
});

describe('environments: access', () => {
  it('a policy that names no environment grants exactly what it did: `default`, and nothing anywhere else', async () => {
    const { admin, as, mkEnv, tenant } = await world();
    await mkEnv('production');
    const secret = v('prod');
    await admin('PUT', '/v1/secrets/shared/pay/DB_URL', { value: v('d') });
    await admin('PUT', '/v1/secrets/shared/pay/DB_URL?env=production', { value: secret });
    const legacy = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      policies: [{ path: 'shared/pay/*', capabilities: ['read', 'list', 'write'] }],
    });
    const svc = as(legacy.token);
    expectOk(await svc('GET', '/v1/secrets/shared/pay/DB_URL'), 200, SecretWithValue);
    // Production is, for this service, not there: the answer is exactly that of a name that does not exist.
    const hidden = expectError(await svc('GET', '/v1/secrets/shared/pay/DB_URL?env=production'), 404, 'not_found');
    const missing = expectError(await svc('GET', '/v1/secrets/shared/pay/NO_SUCH'), 404, 'not_found');
    const unknownEnv = expectError(await svc('GET', '/v1/secrets/shared/pay/DB_URL?env=nowhere'), 404, 'not_found');
    expect([hidden.message, unknownEnv.message]).toEqual([missing.message, missing.message]);
    expect(hidden.details).toEqual(missing.details);
    const put = expectError(
      await svc('PUT', '/v1/secrets/shared/pay/DB_URL?env=production', { value: 'x' }),
      404,
      'not_found',
    );
    const putNowhere = expectError(
      await svc('PUT', '/v1/secrets/shared/pay/DB_URL?env=nowhere', { value: 'x' }),
      404,
      'not_found',
    );
    expect(put.message).toBe('environment production not found');
    expect(putNowhere.message).toBe('environment nowhere not found');
    expect(expectOk(await svc('GET', '/v1/secrets?env=production'), 200, SecretPage).items).toEqual([]);
    expect(expectOk(await svc('GET', '/v1/bundles/shared/pay?env=production'), 200, Bundle)).toEqual({
      values: {},
      versions: {},
    });
    expect(expectOk(await svc('GET', '/v1/environments'), 200, EnvironmentList).items.map((e) => e.slug)).toEqual([
      'default',
    ]);
    // And production's value is what it was.
    expect(
      expectOk(await admin('GET', '/v1/secrets/shared/pay/DB_URL?env=production'), 200, SecretWithValue).value,
    ).toBe(secret);
  });

  it('a policy applies in the environments it names, by slug or glob; a new environment grants nothing', async () => {
    const { admin, as, mkEnv, tenant } = await world();
    for (const e of ['staging', 'prod-eu', 'prod-us']) await mkEnv(e);
    for (const e of ['default', 'staging', 'prod-eu', 'prod-us']) {
      await admin('PUT', `/v1/secrets/shared/pay/TOKEN?env=${e}`, { value: `${e}-value` });
    }
    const staging = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      policies: [{ path: 'shared/pay/*', capabilities: ['read'], environments: ['staging'] }],
    });
    const prod = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      policies: [
        { path: 'shared/pay/*', capabilities: ['read'], environments: ['prod-*'] },
        { path: 'shared/pay/*', capabilities: ['list'], environments: ['*'] },
      ],
    });
    const read = async (token: string, env: string) =>
      (await as(token)('GET', `/v1/secrets/shared/pay/TOKEN?env=${env}`)).statusCode;
    const grid = async (token: string) =>
      Promise.all(['default', 'staging', 'prod-eu', 'prod-us', 'prod-ap'].map((e) => read(token, e)));
    // `default` is in every tenant, so a refusal there is the 403 it always was; other environments are hidden.
    expect(await grid(staging.token)).toEqual([403, 200, 404, 404, 404]);
    // `list` everywhere makes every environment visible, so a missing `read` there is a 403 that names it.
    expect(await grid(prod.token)).toEqual([403, 403, 200, 200, 404]);
    await mkEnv('prod-ap');
    await admin('PUT', '/v1/secrets/shared/pay/TOKEN?env=prod-ap', { value: 'ap' });
    expect(await read(prod.token, 'prod-ap')).toBe(200);
    expect(await read(staging.token, 'prod-ap')).toBe(404);
    const refused = expectError(
      await as(prod.token)('GET', '/v1/secrets/shared/pay/TOKEN?env=staging'),
      403,
      'forbidden',
    );
    expect(refused.message).toContain('in staging');
    // A policy's environments must be slugs or globs.
    const bad = await admin('POST', '/v1/identities', {
      name: 'bad',
      role: 'service',
      policies: [{ path: 'shared/pay/*', capabilities: ['read'], environments: ['Prod/EU'] }],
    });
    expectError(bad, 400, 'validation_failed');
  });

  it('a protected environment takes writes from admins and by promotion, not from services directly', async () => {
    const { admin, as, mkEnv, tenant } = await world();
    await mkEnv('staging');
    await mkEnv('production', { protected: true });
    await admin('PUT', '/v1/secrets/shared/pay/KEY?env=staging', { value: 'tested' });
    const deployer = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      policies: [
        {
          path: 'shared/pay/*',
          capabilities: ['read', 'list', 'write', 'delete', 'rotate'],
          environments: ['staging', 'production'],
        },
      ],
    });
    const svc = as(deployer.token);
    for (const [method, url, body] of [
      ['PUT', '/v1/secrets/shared/pay/KEY?env=production', { value: 'direct' }],
      ['POST', '/v1/bundles/shared/pay?env=production', { set: { KEY: { value: 'direct' } } }],
    ] as const) {
      const e = expectError(await svc(method, url, body), 403, 'forbidden');
      expect(e.message).toContain('environment production is protected');
    }
    expectOk(
      await admin('PUT', '/v1/secrets/shared/pay/OTHER?env=production', { value: 'by-admin' }),
      201,
      SecretMetadata,
    );
    for (const [method, url, body] of [
      ['PATCH', '/v1/secrets/shared/pay/OTHER?env=production', { description: 'x' }],
      ['DELETE', '/v1/secrets/shared/pay/OTHER?env=production', undefined],
      ['POST', '/v1/secrets/shared/pay/OTHER/rotate?env=production', { value: 'r' }],
    ] as const) {
      expectError(await svc(method, url, body), 403, 'forbidden');
    }
    const promoted = expectOk(
      await svc('POST', '/v1/environments/promote', {
        from: 'staging',
        to: 'production',
        kind: 'shared',
        owner: 'pay',
        names: ['KEY'],
      }),
      200,
      PromoteResponse,
    );
    expect(promoted.items).toEqual([
      { name: 'KEY', fromVersion: 1, toVersion: 1, previousToVersion: null, changed: true },
    ]);
    expect(expectOk(await svc('GET', '/v1/secrets/shared/pay/KEY?env=production'), 200, SecretWithValue).value).toBe(
      'tested',
    );
  });
});

describe('environments: against a holder of the database role', () => {
  it('a secret row moved from staging to production fails its read there (its MAC and binding name staging)', async () => {
    const { admin, mkEnv, tid } = await world();
    await mkEnv('staging');
    await mkEnv('production');
    await admin('PUT', '/v1/secrets/shared/move/KEY?env=staging', { value: 'staging-only' });
    await owner.query(
      `update coffer.secrets set environment = 'production' where tenant_id = $1 and name = 'KEY' and owner = 'move'`,
      [tid],
    );
    const moved = expectError(await admin('GET', '/v1/secrets/shared/move/KEY?env=production'), 500, 'integrity_error');
    expect(moved.message).not.toContain('staging-only');
    const bundle = await admin('GET', '/v1/bundles/shared/move?env=production');
    expect(bundle.statusCode).toBe(500);
    expect(bundle.body).not.toContain('staging-only');
  });
});

describe('environments: diff', () => {
  it('compares by keyed fingerprints, needs only list on both sides, and never shows a value', async () => {
    const { admin, as, mkEnv, tenant, tid } = await world();
    await mkEnv('staging');
    await mkEnv('production');
    const values: string[] = [];
    const put = async (env: string, name: string, value: string, extra: Record<string, unknown> = {}) => {
      values.push(value);
      expect(
        (await admin('PUT', `/v1/secrets/shared/pay/${name}?env=${env}`, { value, ...extra })).statusCode,
      ).toBeLessThan(300);
    };
    const same = v('same');
    await put('staging', 'SAME', same);
    await put('production', 'SAME', same);
    await put('staging', 'DIFF', v('stg'), { format: { minLength: 1 } });
    await put('production', 'DIFF', v('prd'));
    await put('staging', 'ROT', same, { rotation: { intervalDays: 30 } });
    await put('production', 'ROT', same, { rotation: { intervalDays: 90 } });
    await put('staging', 'NEW', v('new'));
    await put('production', 'OLD', v('old'));
    // Written again to the same value: a new version, still the same value.
    await put('production', 'SAME', same);

    const ci = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      policies: [{ path: 'shared/pay/*', capabilities: ['list'], environments: ['staging', 'production'] }],
    });
    const auditor = await createIdentity(t.app, tenant.adminToken, { role: 'auditor' });
    const url = '/v1/environments/diff?from=staging&to=production&kind=shared&owner=pay';
    for (const token of [ci.token, auditor.token, tenant.adminToken]) {
      const res = await as(token)('GET', url);
      const d = expectOk(res, 200, EnvironmentDiff);
      expect(d.items.map((i) => [i.name, i.state, i.formatDiffers, i.rotationDiffers])).toEqual([
        ['DIFF', 'different', true, false],
        ['NEW', 'only_in_from', false, false],
        ['OLD', 'only_in_to', false, false],
        ['ROT', 'same', false, true],
        ['SAME', 'same', false, false],
      ]);
      expect(d.items.find((i) => i.name === 'SAME')).toMatchObject({ fromVersion: 1, toVersion: 2 });
      expect(leaksIn(res.body, values)).toEqual([]);
    }
    // A service without list on one side does not see that side's names.
    const half = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      policies: [
        { path: 'shared/pay/*', capabilities: ['list'], environments: ['staging'] },
        { path: 'shared/pay/SAME', capabilities: ['list'], environments: ['production'] },
      ],
    });
    const partial = expectOk(await as(half.token)('GET', url), 200, EnvironmentDiff);
    expect(partial.items.map((i) => [i.name, i.state])).toEqual([
      ['DIFF', 'only_in_from'],
      ['NEW', 'only_in_from'],
      ['ROT', 'only_in_from'],
      ['SAME', 'same'],
    ]);
    const blind = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      policies: [{ path: 'shared/pay/*', capabilities: ['list'], environments: ['staging'] }],
    });
    expectError(await as(blind.token)('GET', url), 404, 'not_found');
    expectError(
      await admin('GET', '/v1/environments/diff?from=staging&to=nowhere&kind=shared&owner=pay'),
      404,
      'not_found',
    );
    // No value in any log line or audit row either.
    const { rows } = await owner.query(
      `select row_to_json(e)::text as j from coffer.audit_events e where tenant_id = $1`,
      [tid],
    );
    expect(leaksIn(rows.map((r) => r.j).join('\n'), values)).toEqual([]);
    expect(leaksIn(t.logs.join('\n'), values)).toEqual([]);
    const diffEvents = rows.filter((r) => r.j.includes('"environments.diff"') && r.j.includes('"outcome":"allowed"'));
    expect(diffEvents.length).toBe(4);
    expect(diffEvents[0]?.j).toMatch(/"different": ?1/);
  });

  it('versions written before fingerprints were stored still compare (the fingerprint is computed from the value)', async () => {
    const { admin, mkEnv, tid } = await world();
    await mkEnv('staging');
    await admin('PUT', '/v1/secrets/shared/fp/A', { value: 'same' });
    await admin('PUT', '/v1/secrets/shared/fp/A?env=staging', { value: 'same' });
    await admin('PUT', '/v1/secrets/shared/fp/B', { value: 'one' });
    await admin('PUT', '/v1/secrets/shared/fp/B?env=staging', { value: 'two' });
    await owner.query('update coffer.secret_versions set fingerprint = null where tenant_id = $1', [tid]);
    const d = expectOk(
      await admin('GET', '/v1/environments/diff?from=default&to=staging&kind=shared&owner=fp'),
      200,
      EnvironmentDiff,
    );
    expect(d.items.map((i) => [i.name, i.state])).toEqual([
      ['A', 'same'],
      ['B', 'different'],
    ]);
  });
});

describe('environments: promotion', () => {
  it('copies current values in one transaction; a stale name is a 409 that names every stale name, and nothing changes', async () => {
    const { admin, mkEnv, tid } = await world();
    await mkEnv('staging');
    await mkEnv('production');
    const hook = await admin('POST', '/v1/webhooks', {
      url: 'http://127.0.0.1:9/promotions',
      events: ['secret.written'],
    });
    expect(hook.statusCode).toBe(201);
    for (const n of ['A', 'B', 'C'])
      await admin('PUT', `/v1/secrets/shared/app/${n}?env=staging`, { value: `${n}-stg` });
    await admin('PUT', '/v1/secrets/shared/app/B?env=production', { value: 'B-prd' });
    await admin('PUT', '/v1/secrets/shared/app/C?env=production', { value: 'C-prd' });
    await admin('PUT', '/v1/secrets/shared/app/C?env=production', { value: 'C-prd-2' });
    const before = await owner.query(
      'select environment, name, current_version from coffer.secrets where tenant_id = $1 order by 1, 2',
      [tid],
    );
    const stale = expectError(
      await admin('POST', '/v1/environments/promote', {
        from: 'staging',
        to: 'production',
        kind: 'shared',
        owner: 'app',
        expect: { A: 0, B: 2, C: 1 },
      }),
      409,
      'conflict',
    );
    expect(stale.details?.map((d) => d.path)).toEqual(['expect.B', 'expect.C']);
    const after = await owner.query(
      'select environment, name, current_version from coffer.secrets where tenant_id = $1 order by 1, 2',
      [tid],
    );
    expect(after.rows).toEqual(before.rows);

    const done = expectOk(
      await admin('POST', '/v1/environments/promote', {
        from: 'staging',
        to: 'production',
        kind: 'shared',
        owner: 'app',
        expect: { A: 0, B: 1, C: 2 },
      }),
      200,
      PromoteResponse,
    );
    expect(done.items).toEqual([
      { name: 'A', fromVersion: 1, toVersion: 1, previousToVersion: null, changed: true },
      { name: 'B', fromVersion: 1, toVersion: 2, previousToVersion: 1, changed: true },
      { name: 'C', fromVersion: 1, toVersion: 3, previousToVersion: 2, changed: true },
    ]);
    for (const n of ['A', 'B', 'C']) {
      const got = expectOk(await admin('GET', `/v1/secrets/shared/app/${n}?env=production`), 200, SecretWithValue);
      expect(got.value).toBe(`${n}-stg`);
    }
    // Again: every value is already there, so no version is written.
    const again = expectOk(
      await admin('POST', '/v1/environments/promote', {
        from: 'staging',
        to: 'production',
        kind: 'shared',
        owner: 'app',
      }),
      200,
      PromoteResponse,
    );
    expect(again.items.map((i) => [i.name, i.changed, i.toVersion])).toEqual([
      ['A', false, 1],
      ['B', false, 2],
      ['C', false, 3],
    ]);
    // Each promoted name is audited with both versions, and notified as written.
    const events = expectOk(
      await admin('GET', '/v1/audit?action=secrets.write&path=shared/app/&env=production'),
      200,
      AuditPage,
    ).items.filter((e) => e.details?.via === 'promotion');
    expect(
      events.map((e) => [e.resource, e.version, e.details?.fromVersion, e.details?.previousVersion]).sort(),
    ).toEqual([
      ['shared/app/A', 1, 1, null],
      ['shared/app/B', 2, 1, 1],
      ['shared/app/C', 3, 1, 2],
    ]);
    const hooks = await owner.query(
      `select payload from coffer.webhook_deliveries where tenant_id = $1 and payload->>'promotedFrom' = 'staging'
       order by payload->>'path'`,
      [tid],
    );
    expect(hooks.rows.map((r) => [r.payload.path, r.payload.environment, r.payload.version])).toEqual([
      ['shared/app/A', 'production', 1],
      ['shared/app/B', 'production', 2],
      ['shared/app/C', 'production', 3],
    ]);
    // No promoted value in a log line, an audit row or a webhook payload.
    const promotedValues = ['A-stg', 'B-stg', 'C-stg', 'B-prd', 'C-prd-2'];
    const audit = await owner.query(
      `select row_to_json(e)::text as j from coffer.audit_events e where tenant_id = $1`,
      [tid],
    );
    const queued = await owner.query(`select payload::text as j from coffer.webhook_deliveries where tenant_id = $1`, [
      tid,
    ]);
    const scanned = [...audit.rows, ...queued.rows].map((r) => r.j).join('\n');
    expect(leaksIn(`${scanned}\n${t.logs.join('\n')}`, promotedValues)).toEqual([]);
    expectError(
      await admin('POST', '/v1/environments/promote', { from: 'staging', to: 'staging', kind: 'shared', owner: 'app' }),
      400,
      'validation_failed',
    );
    expectError(
      await admin('POST', '/v1/environments/promote', {
        from: 'staging',
        to: 'production',
        kind: 'shared',
        owner: 'app',
        names: ['A'],
        expect: { B: 1 },
      }),
      400,
      'validation_failed',
    );
    expectError(
      await admin('POST', '/v1/environments/promote', {
        from: 'staging',
        to: 'production',
        kind: 'shared',
        owner: 'app',
        names: ['NOPE'],
      }),
      404,
      'not_found',
    );
  });

  it('under 20 concurrent writers to the target, no write is lost and exactly the stale names are reported', async () => {
    const { admin, mkEnv } = await world();
    await mkEnv('staging');
    await mkEnv('production');
    const names = Array.from({ length: 10 }, (_, i) => `N${i}`);
    const raced = names.slice(0, 5);
    for (const n of names) {
      await admin('PUT', `/v1/secrets/shared/race/${n}?env=staging`, { value: `${n}-promoted` });
      await admin('PUT', `/v1/secrets/shared/race/${n}?env=production`, { value: `${n}-v1` });
    }
    // A name no writer touches changes only in the first promotion that lands; a round may lose the race with 409.
    let landedBefore = false;
    for (let round = 0; round < 3; round++) {
      const base = Object.fromEntries(
        await Promise.all(
          names.map(async (n) => {
            const vs = expectOk(
              await admin('GET', `/v1/secrets/shared/race/${n}/versions?env=production`),
              200,
              SecretVersions,
            );
            return [n, vs.items[0]?.version as number] as const;
          }),
        ),
      );
      // 20 writers, four on each of five names, race one promotion that expects every name as it was.
      const writers = raced.flatMap((n) =>
        [0, 1, 2, 3].map((k) =>
          admin('PUT', `/v1/secrets/shared/race/${n}?env=production`, { value: `${n}-w${round}${k}` }),
        ),
      );
      const [res, ...written] = await Promise.all([
        admin('POST', '/v1/environments/promote', {
          from: 'staging',
          to: 'production',
          kind: 'shared',
          owner: 'race',
          expect: base,
        }),
        ...writers,
      ]);
      for (const w of written) expect(w.statusCode).toBe(200);
      const after = Object.fromEntries(
        await Promise.all(
          names.map(async (n) => {
            const vs = expectOk(
              await admin('GET', `/v1/secrets/shared/race/${n}/versions?env=production`),
              200,
              SecretVersions,
            );
            return [n, vs.items.map((i) => i.version).sort((a, b) => a - b)] as const;
          }),
        ),
      );
      const promoted = res?.statusCode === 200;
      for (const n of names) {
        const gained = raced.includes(n) ? 4 : 0;
        const changed = promoted && (raced.includes(n) || !landedBefore);
        // Every write landed, each as its own version, with no gap: nothing was lost or overwritten.
        const top = (base[n] as number) + gained + (changed ? 1 : 0);
        expect(after[n], n).toEqual(Array.from({ length: top }, (_, i) => i + 1));
      }
      if (promoted) landedBefore = true;
      if (!promoted) {
        const stale = expectError(res as never, 409, 'conflict');
        const staleNames = (stale.details ?? []).map((d) => d.path.replace('expect.', ''));
        // Only names a writer reached before the promotion's locks can be stale; the others never are.
        expect(staleNames.length).toBeGreaterThan(0);
        expect(staleNames.filter((n) => !raced.includes(n))).toEqual([]);
        expect(new Set(staleNames).size).toBe(staleNames.length);
      }
    }
  });
});
