import { randomUUID } from 'node:crypto';
import {
  type Generator,
  RotationDue,
  RotationLog,
  SecretMetadata,
  SecretVersions,
  SecretWithValue,
} from '@coffer/contracts';
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { auditRowsFor, auditRowsOf, firstBrokenLink } from '../support/audit.ts';
import { createIdentity } from '../support/factories.ts';
import { makeDue, opsApi, secretIdOf, withFailingTrigger } from '../support/ops.ts';
import { expectError, expectOk, identityIdOf, requestIdOf, type SecretsApi, sleep } from '../support/secrets.ts';
import { ownerSuite, tenantCtx } from '../support/suite.ts';
import type { TestApp } from '../support/test-app.ts';

let t: TestApp;
let owner: pg.Client;
let root: string;

ownerSuite((s) => {
  ({ t, owner, root } = s);
});

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** `at` is within `toleranceMs` of `expected` (both as instants). */
function expectNear(at: string | null | undefined, expected: number, toleranceMs = 60_000): void {
  expect(at).toBeTypeOf('string');
  expect(Math.abs(Date.parse(at as string) - expected)).toBeLessThan(toleranceMs);
}

const versionsOf = async (api: SecretsApi, path: string) =>
  expectOk(await api.versions(path), 200, SecretVersions).items;

describe('manual rotation', () => {
  it('with a value: the value becomes current, the previous one stays readable for 24 h by default', async () => {
    const { tenant, api, ops } = await tenantCtx(t, root);
    const P = 'sandbox/app/API_KEY';
    expectOk(await api.put(P, { value: 'old-value' }), 201, SecretMetadata);

    const before = Date.now();
    const res = await ops.rotate(P, { value: 'new-value' });
    const meta = expectOk(res, 200, SecretMetadata);
    expect(meta).toMatchObject({ kind: 'sandbox', owner: 'app', name: 'API_KEY', version: 2, rotation: null });
    expectNear(meta.lastRotatedAt, before, 10_000);
    // No policy: nothing is scheduled.
    expect(meta.nextRotationAt).toBeNull();

    expect(expectOk(await api.get(P), 200, SecretWithValue)).toMatchObject({ version: 2, value: 'new-value' });
    expect(expectOk(await api.get(P, 'previous'), 200, SecretWithValue)).toMatchObject({
      version: 1,
      value: 'old-value',
    });
    const versions = await versionsOf(api, P);
    expect(versions.map((v) => [v.version, v.state])).toEqual([
      [2, 'current'],
      [1, 'previous'],
    ]);
    expect(versions[0]?.servedUntil).toBeNull();
    expectNear(versions[1]?.servedUntil, before + 24 * HOUR);

    // One audit event for the rotation, naming both versions and fingerprinting (not storing) the value.
    const rows = await auditRowsFor(owner, requestIdOf(res));
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      tenant_id: tenant.tenant.id,
      action: 'secrets.rotate',
      outcome: 'allowed',
      resource: P,
      version: 2,
      actor_id: await identityIdOf(t.app, tenant.adminToken),
      details: { from: 1, to: 2, trigger: 'manual' },
    });
    expect(rows[0]?.fingerprint).toMatch(/^[0-9a-f]{32}$/);
    expect(JSON.stringify(rows[0])).not.toContain('new-value');
  });

  const charsets: [Generator['charset'], RegExp][] = [
    ['alphanumeric', /^[A-Za-z0-9]+$/],
    ['hex', /^[0-9a-f]+$/],
    ['base64url', /^[A-Za-z0-9_-]+$/],
    ['ascii-printable', /^[\x21-\x7e]+$/],
  ];
  it.each(charsets)('without a value: the %s generator makes the new value', async (charset, alphabet) => {
    const { api, ops } = await tenantCtx(t, root);
    const P = `user/u-1/GEN_${charset.replace('-', '_').toUpperCase()}`;
    const generator = { length: 40, charset, prefix: 'gen_' };
    const created = expectOk(
      await api.put(P, { value: 'seed', rotation: { intervalDays: 30, generator } }),
      201,
      SecretMetadata,
    );
    expect(created.rotation).toEqual({ intervalDays: 30, graceHours: 24, generator });

    const values = new Set<string>();
    for (const version of [2, 3]) {
      expect(expectOk(await ops.rotate(P), 200, SecretMetadata).version).toBe(version);
      const got = expectOk(await api.get(P), 200, SecretWithValue);
      expect(got.version).toBe(version);
      expect(got.value.startsWith('gen_')).toBe(true);
      const body = got.value.slice('gen_'.length);
      expect(body).toHaveLength(40);
      expect(body).toMatch(alphabet);
      values.add(got.value);
    }
    expect(values.size).toBe(2);
    // A given value still wins over the generator.
    expectOk(await ops.rotate(P, { value: 'chosen-by-hand' }), 200, SecretMetadata);
    expect(expectOk(await api.get(P), 200, SecretWithValue).value).toBe('chosen-by-hand');
  });

  it('ascii-printable draws from the whole alphabet, not a narrow part of it', async () => {
    const { api, ops } = await tenantCtx(t, root);
    const P = 'shared/g/WIDE';
    await api.put(P, {
      value: 'x',
      rotation: { intervalDays: 1, generator: { length: 4096, charset: 'ascii-printable' } },
    });
    expectOk(await ops.rotate(P), 200, SecretMetadata);
    const value = expectOk(await api.get(P), 200, SecretWithValue).value;
    // 4096 uniform draws from 94 symbols: every symbol shows up (missing one has probability ~1e-16).
    expect(new Set(value).size).toBe(94);
  });

  it('without a value and without a generator: 422, and nothing changes', async () => {
    const { api, ops } = await tenantCtx(t, root);
    const P = 'sandbox/app/NO_GEN';
    await api.put(P, { value: 'keep-me', rotation: { intervalDays: 30 } });
    const err = expectError(await ops.rotate(P), 422, 'unprocessable');
    expect(err.details?.[0]?.path).toBe('body.value');
    expectError(await ops.rotate(P, {}), 422, 'unprocessable');
    expect(expectOk(await api.get(P), 200, SecretWithValue)).toMatchObject({ version: 1, value: 'keep-me' });
    expect(await versionsOf(api, P)).toHaveLength(1);
  });

  it('rotating a missing, deleted or other tenant’s secret is 404', async () => {
    const a = await tenantCtx(t, root);
    const b = await tenantCtx(t, root);
    await b.api.put('sandbox/app/THEIRS', { value: 'b-value' });
    expectError(await a.ops.rotate('sandbox/app/THEIRS', { value: 'x' }), 404, 'not_found');
    expectError(await a.ops.rotate('sandbox/app/NOPE', { value: 'x' }), 404, 'not_found');
    await a.api.put('sandbox/app/GONE', { value: 'v' });
    expect((await a.api.remove('sandbox/app/GONE')).statusCode).toBe(204);
    expectError(await a.ops.rotate('sandbox/app/GONE', { value: 'x' }), 404, 'not_found');
    expect(expectOk(await b.api.get('sandbox/app/THEIRS'), 200, SecretWithValue).version).toBe(1);
  });
});

describe('grace period of the previous version', () => {
  it('graceHours 0: the previous version is 410 gone at once, yet still listed', async () => {
    const { api, ops } = await tenantCtx(t, root);
    const P = 'sandbox/app/NO_GRACE';
    await api.put(P, { value: 'v1', rotation: { intervalDays: 30, graceHours: 0 } });
    expectOk(await ops.rotate(P, { value: 'v2' }), 200, SecretMetadata);
    expectError(await api.get(P, 'previous'), 410, 'gone');
    expectError(await api.get(P, 1), 410, 'gone');
    expect(expectOk(await api.get(P), 200, SecretWithValue).value).toBe('v2');
    const versions = await versionsOf(api, P);
    expect(versions.map((v) => [v.version, v.state])).toEqual([
      [2, 'current'],
      [1, 'previous'],
    ]);
    expect(Date.parse(versions[1]?.servedUntil ?? '')).toBeLessThanOrEqual(Date.now());
  });

  it('a custom grace sets servedUntil; once it has passed the version is gone and its value not served', async () => {
    const { tenant, api, ops } = await tenantCtx(t, root);
    const P = 'sandbox/app/GRACE';
    await api.put(P, { value: 'first', rotation: { intervalDays: 30, graceHours: 2 } });
    const before = Date.now();
    expectOk(await ops.rotate(P, { value: 'second' }), 200, SecretMetadata);
    expectNear((await versionsOf(api, P))[1]?.servedUntil, before + 2 * HOUR);
    expect(expectOk(await api.get(P, 'previous'), 200, SecretWithValue).value).toBe('first');

    // The grace period ends (moved into the past by the owner).
    const id = await secretIdOf(owner, tenant.tenant.id, P);
    await owner.query(
      `update coffer.secret_versions set served_until = now() - interval '1 second' where secret_id = $1 and version = 1`,
      [id],
    );
    const gone = await api.get(P, 'previous');
    const err = expectError(gone, 410, 'gone');
    expect(err.message).toMatch(/rotated out/);
    expect(gone.body).not.toContain('first');
    expectError(await api.get(P, 1), 410, 'gone');
    expect((await versionsOf(api, P)).map((v) => v.version)).toEqual([2, 1]);

    // The next rotation makes version 2 the previous one, served for its own grace period; version 1 stays gone.
    expectOk(await ops.rotate(P, { value: 'third' }), 200, SecretMetadata);
    expect(expectOk(await api.get(P, 'previous'), 200, SecretWithValue)).toMatchObject({
      version: 2,
      value: 'second',
    });
    expectError(await api.get(P, 1), 410, 'gone');
    expect((await versionsOf(api, P)).map((v) => v.state)).toEqual(['current', 'previous', 'old']);
  });
});

describe('format check on rotation', () => {
  it('a given value that fails the format is 422, audited, and the current version stays', async () => {
    const { tenant, api, ops } = await tenantCtx(t, root);
    const P = 'sandbox/app/ID';
    const id = randomUUID();
    await api.put(P, { value: id, format: 'uuid' });
    const res = await ops.rotate(P, { value: 'not-a-uuid' });
    const err = expectError(res, 422, 'unprocessable');
    expect(err.details).toEqual([{ path: 'body.value', message: 'uuid: must be a UUID' }]);
    expect(res.body).not.toContain('not-a-uuid');
    expect(expectOk(await api.get(P), 200, SecretWithValue)).toMatchObject({ version: 1, value: id });
    expect(await versionsOf(api, P)).toHaveLength(1);
    expect(await auditRowsFor(owner, requestIdOf(res))).toMatchObject([
      { tenant_id: tenant.tenant.id, action: 'secrets.rotate', outcome: 'error', error_code: 'unprocessable' },
    ]);
    // A value that fits rotates.
    const next = randomUUID();
    expectOk(await ops.rotate(P, { value: next }), 200, SecretMetadata);
    expect(expectOk(await api.get(P), 200, SecretWithValue).value).toBe(next);
  });

  it('a generator whose values cannot satisfy the format is refused the same way', async () => {
    const { api, ops } = await tenantCtx(t, root);
    // Custom pattern: a generator with the right prefix fits; one with another prefix never can.
    const P = 'sandbox/app/PK';
    await api.put(P, {
      value: 'sk_0123abcd',
      format: { pattern: '^sk_[0-9a-f]{8}$' },
      rotation: { intervalDays: 30, generator: { length: 8, charset: 'hex', prefix: 'sk_' } },
    });
    expectOk(await ops.rotate(P), 200, SecretMetadata);
    expect(expectOk(await api.get(P), 200, SecretWithValue).value).toMatch(/^sk_[0-9a-f]{8}$/);
    expectOk(
      await ops.patch(P, { rotation: { intervalDays: 30, generator: { length: 8, charset: 'hex', prefix: 'pk_' } } }),
      200,
      SecretMetadata,
    );
    expectError(await ops.rotate(P), 422, 'unprocessable');
    expect(expectOk(await api.get(P), 200, SecretWithValue).version).toBe(2);

    // Built-in hex needs an even number of digits: a 31-digit generator never fits.
    const H = 'sandbox/app/HEX';
    await api.put(H, {
      value: 'abcd',
      format: 'hex',
      rotation: { intervalDays: 1, generator: { length: 31, charset: 'hex' } },
    });
    expectError(await ops.rotate(H), 422, 'unprocessable');
    expect(await versionsOf(api, H)).toHaveLength(1);
  });
});

describe('rotation policy', () => {
  it('PUT sets it and computes nextRotationAt; PATCH changes it without a new version; null removes it', async () => {
    const { api, ops } = await tenantCtx(t, root);
    const P = 'shared/ops/DB_PASSWORD';
    const t0 = Date.now();
    const created = expectOk(
      await api.put(P, { value: 'pw-1', rotation: { intervalDays: 30, graceHours: 6 } }),
      201,
      SecretMetadata,
    );
    expect(created.rotation).toEqual({ intervalDays: 30, graceHours: 6 });
    expect(created.lastRotatedAt).toBeNull();
    expectNear(created.nextRotationAt, t0 + 30 * DAY);

    // A later write without `rotation` keeps the policy.
    const rewritten = expectOk(await api.put(P, { value: 'pw-2' }), 200, SecretMetadata);
    expect(rewritten.rotation).toEqual({ intervalDays: 30, graceHours: 6 });
    expect(rewritten.nextRotationAt).toBe(created.nextRotationAt);

    const patched = expectOk(await ops.patch(P, { rotation: { intervalDays: 7 } }), 200, SecretMetadata);
    expect(patched.version).toBe(2);
    expect(patched.rotation).toEqual({ intervalDays: 7, graceHours: 24 });
    expectNear(patched.nextRotationAt, Date.now() + 7 * DAY);
    expect(await versionsOf(api, P)).toHaveLength(2);

    // After a rotation the next date counts from it, and a new interval counts from the last rotation.
    const rotated = expectOk(await ops.rotate(P, { value: 'pw-3' }), 200, SecretMetadata);
    const last = Date.parse(rotated.lastRotatedAt ?? '');
    expect(Date.parse(rotated.nextRotationAt ?? '')).toBe(last + 7 * DAY);
    const repatched = expectOk(await ops.patch(P, { rotation: { intervalDays: 14 } }), 200, SecretMetadata);
    expect(repatched.lastRotatedAt).toBe(rotated.lastRotatedAt);
    expect(Date.parse(repatched.nextRotationAt ?? '')).toBe(last + 14 * DAY);
    expect((await versionsOf(api, P)).map((v) => v.version)).toEqual([3, 2, 1]);

    // The policy is what GET shows, too.
    expect(expectOk(await api.get(P), 200, SecretWithValue)).toMatchObject({
      rotation: { intervalDays: 14, graceHours: 24 },
      nextRotationAt: repatched.nextRotationAt,
    });

    const cleared = expectOk(await ops.patch(P, { rotation: null }), 200, SecretMetadata);
    expect(cleared).toMatchObject({ rotation: null, nextRotationAt: null, version: 3 });
    expect(expectOk(await ops.due({ within: '99999d' }), 200, RotationDue).items).toEqual([]);
  });

  it('refuses a malformed policy with 400 and names the field', async () => {
    const { api, ops } = await tenantCtx(t, root);
    const P = 'sandbox/app/BAD_POLICY';
    await api.put(P, { value: 'v' });
    const cases: [Record<string, unknown>, string][] = [
      [{ intervalDays: 0 }, 'body.rotation.intervalDays'],
      [{ intervalDays: 1, graceHours: -1 }, 'body.rotation.graceHours'],
      [{ intervalDays: 1, generator: { length: 7, charset: 'hex' } }, 'body.rotation.generator.length'],
      [{ intervalDays: 1, generator: { length: 8, charset: 'emoji' } }, 'body.rotation.generator.charset'],
      [
        { intervalDays: 1, generator: { length: 8, charset: 'hex', prefix: 'has space' } },
        'body.rotation.generator.prefix',
      ],
    ];
    for (const [rotation, path] of cases) {
      const err = expectError(await ops.patch(P, { rotation }), 400, 'validation_failed');
      expect(err.details?.map((d) => d.path)).toContain(path);
    }
    expect(expectOk(await api.get(P), 200, SecretWithValue).rotation).toBeNull();
  });
});

describe('GET /v1/rotation/due', () => {
  it('lists overdue and soon-due secrets with path, last rotation, interval and whether Coffer rotates them', async () => {
    const { tenant, api, ops } = await tenantCtx(t, root);
    const gen = { length: 16, charset: 'alphanumeric' as const };
    await api.put('sandbox/a/OVERDUE', { value: 'v', rotation: { intervalDays: 30, generator: gen } });
    await api.put('sandbox/a/SOON', { value: 'v', rotation: { intervalDays: 3 } });
    await api.put('sandbox/a/LATER', { value: 'v', rotation: { intervalDays: 20, generator: gen } });
    await api.put('sandbox/a/NEVER', { value: 'v' });
    await api.put('sandbox/a/DELETED', { value: 'v', rotation: { intervalDays: 1 } });
    expect((await api.remove('sandbox/a/DELETED')).statusCode).toBe(204);
    // SOON was rotated by hand once: its last rotation is shown and its next date counts from it.
    const soon = expectOk(await ops.rotate('sandbox/a/SOON', { value: 'v2' }), 200, SecretMetadata);
    await makeDue(owner, tenant.tenant.id, [await secretIdOf(owner, tenant.tenant.id, 'sandbox/a/OVERDUE')], '2 days');

    // Another tenant's overdue secret never shows.
    const other = await tenantCtx(t, root);
    await other.api.put('sandbox/a/FOREIGN', { value: 'v', rotation: { intervalDays: 1 } });
    await makeDue(owner, other.tenant.tenant.id, [
      await secretIdOf(owner, other.tenant.tenant.id, 'sandbox/a/FOREIGN'),
    ]);

    const week = expectOk(await ops.due({ within: '7d' }), 200, RotationDue).items;
    expect(week).toHaveLength(2);
    const [overdue, due] = week;
    expect(overdue).toMatchObject({
      kind: 'sandbox',
      owner: 'a',
      name: 'OVERDUE',
      path: 'sandbox/a/OVERDUE',
      intervalDays: 30,
      lastRotatedAt: null,
      overdue: true,
      automatic: true,
    });
    expectNear(overdue?.nextRotationAt, Date.now() - 2 * DAY);
    expect(due).toMatchObject({
      path: 'sandbox/a/SOON',
      intervalDays: 3,
      lastRotatedAt: soon.lastRotatedAt,
      nextRotationAt: soon.nextRotationAt,
      overdue: false,
      automatic: false,
    });

    // The default window is 7 days; wider and narrower windows include more and fewer.
    expect(expectOk(await ops.due(), 200, RotationDue).items.map((i) => i.name)).toEqual(['OVERDUE', 'SOON']);
    expect(expectOk(await ops.due({ within: '21d' }), 200, RotationDue).items.map((i) => i.name)).toEqual([
      'OVERDUE',
      'SOON',
      'LATER',
    ]);
    expect(expectOk(await ops.due({ within: '1h' }), 200, RotationDue).items.map((i) => i.name)).toEqual(['OVERDUE']);
    expect(expectOk(await ops.due({ within: '21d', limit: 1 }), 200, RotationDue).items.map((i) => i.name)).toEqual([
      'OVERDUE',
    ]);
    expectError(await ops.due({ within: '7 days' }), 400, 'validation_failed');

    // Services may not look (auditors may: see below).
    const svc = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      policies: [{ path: 'sandbox/**', capabilities: ['read', 'list', 'rotate'] }],
    });
    expectError(await opsApi(t.app, svc.token).due(), 403, 'forbidden');
  });

  // Regression: the due list was filtered by services' path policies, which left an auditor an empty list.
  it('shows an auditor the same due list as the admin', async () => {
    const { tenant, api, ops } = await tenantCtx(t, root);
    await api.put('sandbox/a/DUE', { value: 'v', rotation: { intervalDays: 1 } });
    const admin = expectOk(await ops.due(), 200, RotationDue).items;
    expect(admin.map((i) => i.path)).toEqual(['sandbox/a/DUE']);
    const auditor = await createIdentity(t.app, tenant.adminToken, { role: 'auditor' });
    expect(expectOk(await opsApi(t.app, auditor.token).due(), 200, RotationDue).items).toEqual(admin);
  });
});

describe('GET /v1/rotation/log', () => {
  it('lists every rotation, manual, failed and refused, newest first, by time range and page', async () => {
    const { tenant, api, ops } = await tenantCtx(t, root);
    const adminId = await identityIdOf(t.app, tenant.adminToken);
    const P = 'sandbox/app/ROTATED';
    await api.put(P, { value: 'v1', format: { minLength: 2 } });
    expectOk(await ops.rotate(P, { value: 'v2' }), 200, SecretMetadata);
    await sleep(5);
    const between = new Date().toISOString();
    await sleep(5);
    expectOk(await ops.rotate(P, { value: 'v3' }), 200, SecretMetadata);
    expectError(await ops.rotate(P, { value: 'x' }), 422, 'unprocessable');
    const reader = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      policies: [{ path: 'sandbox/app/*', capabilities: ['read'] }],
    });
    expectError(await opsApi(t.app, reader.token).rotate(P, { value: 'v9' }), 403, 'forbidden');
    // Writes that are not rotations are not in the rotation log.
    await api.put(P, { value: 'plain-write' });

    const log = expectOk(await ops.log(), 200, RotationLog);
    expect(log.nextCursor).toBeNull();
    const entries = log.items.map((i) => ({
      path: i.path,
      fromVersion: i.fromVersion,
      toVersion: i.toVersion,
      trigger: i.trigger,
      actorId: i.actorId,
      outcome: i.outcome,
      errorCode: i.errorCode,
    }));
    expect(entries).toEqual([
      {
        path: P,
        fromVersion: null,
        toVersion: null,
        trigger: 'manual',
        actorId: reader.identity.id,
        outcome: 'denied',
        errorCode: 'forbidden',
      },
      {
        path: P,
        fromVersion: null,
        toVersion: null,
        trigger: 'manual',
        actorId: adminId,
        outcome: 'error',
        errorCode: 'unprocessable',
      },
      {
        path: P,
        fromVersion: 2,
        toVersion: 3,
        trigger: 'manual',
        actorId: adminId,
        outcome: 'allowed',
        errorCode: null,
      },
      {
        path: P,
        fromVersion: 1,
        toVersion: 2,
        trigger: 'manual',
        actorId: adminId,
        outcome: 'allowed',
        errorCode: null,
      },
    ]);
    const times = log.items.map((i) => Date.parse(i.at));
    expect([...times].sort((a, b) => b - a)).toEqual(times);

    // Time range: from is inclusive, to exclusive.
    const fromBetween = expectOk(await ops.log({ from: between }), 200, RotationLog).items;
    expect(fromBetween.map((i) => i.outcome)).toEqual(['denied', 'error', 'allowed']);
    const toBetween = expectOk(await ops.log({ to: between }), 200, RotationLog).items;
    expect(toBetween.map((i) => i.toVersion)).toEqual([2]);

    // Pages of two: the same entries, none repeated.
    const first = expectOk(await ops.log({ limit: 2 }), 200, RotationLog);
    expect(first.items).toHaveLength(2);
    expect(first.nextCursor).toBeTypeOf('string');
    const second = expectOk(await ops.log({ limit: 2, cursor: first.nextCursor ?? '' }), 200, RotationLog);
    expect(second.nextCursor).toBeNull();
    expect([...first.items, ...second.items]).toEqual(log.items);

    // An auditor reads the log; a service cannot.
    const auditor = await createIdentity(t.app, tenant.adminToken, { role: 'auditor' });
    expect(expectOk(await opsApi(t.app, auditor.token).log(), 200, RotationLog).items).toHaveLength(4);
    expectError(await opsApi(t.app, reader.token).log(), 403, 'forbidden');
    // Another tenant's log holds none of these.
    const other = await tenantCtx(t, root);
    expect(expectOk(await other.ops.log(), 200, RotationLog).items).toEqual([]);
  });
});

describe('who may rotate', () => {
  it('a service needs the rotate capability on the path; an auditor never rotates', async () => {
    const { tenant, api } = await tenantCtx(t, root);
    await api.put('sandbox/svc/TOKEN', { value: 'v1' });
    await api.put('sandbox/other/TOKEN', { value: 'o1' });
    const rotator = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      policies: [{ path: 'sandbox/svc/*', capabilities: ['rotate'] }],
    });
    const writer = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      policies: [{ path: 'sandbox/**', capabilities: ['read', 'write', 'list'] }],
    });
    const auditor = await createIdentity(t.app, tenant.adminToken, { role: 'auditor' });

    expect(
      expectOk(await opsApi(t.app, rotator.token).rotate('sandbox/svc/TOKEN', { value: 'v2' }), 200, SecretMetadata)
        .version,
    ).toBe(2);
    expectError(await opsApi(t.app, rotator.token).rotate('sandbox/other/TOKEN', { value: 'o2' }), 403, 'forbidden');
    expectError(await opsApi(t.app, writer.token).rotate('sandbox/svc/TOKEN', { value: 'v3' }), 403, 'forbidden');
    const denied = await opsApi(t.app, auditor.token).rotate('sandbox/svc/TOKEN', { value: 'v4' });
    expectError(denied, 403, 'forbidden');
    expect(await auditRowsFor(owner, requestIdOf(denied))).toMatchObject([
      { action: 'secrets.rotate', outcome: 'denied', actor_id: auditor.identity.id, resource: 'sandbox/svc/TOKEN' },
    ]);
    expectError(await opsApi(t.app, null).rotate('sandbox/svc/TOKEN', { value: 'v5' }), 401, 'unauthorized');

    expect(expectOk(await api.get('sandbox/svc/TOKEN'), 200, SecretWithValue)).toMatchObject({
      version: 2,
      value: 'v2',
    });
    expect(expectOk(await api.get('sandbox/other/TOKEN'), 200, SecretWithValue).version).toBe(1);
  });
});

describe('concurrent rotations', () => {
  it('ten at once on one secret: each gets its own version, none lost or repeated', async () => {
    const { tenant, api, ops } = await tenantCtx(t, root);
    const P = 'sandbox/app/HOT';
    await api.put(P, { value: 'v1', rotation: { intervalDays: 30, generator: { length: 16, charset: 'hex' } } });
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) => ops.rotate(P, i % 2 === 0 ? { value: `given-${i}` } : undefined)),
    );
    const versions = results.map((r) => expectOk(r, 200, SecretMetadata).version);
    expect([...versions].sort((x, y) => x - y)).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    // Each response's version holds that request's value.
    for (const [i, r] of results.entries()) {
      const got = expectOk(await api.get(P, versions[i]), 200, SecretWithValue).value;
      if (i % 2 === 0) expect(got).toBe(`given-${i}`);
      else expect(got).toMatch(/^[0-9a-f]{16}$/);
      expect(r.statusCode).toBe(200);
    }
    expect((await versionsOf(api, P)).map((v) => v.version)).toEqual([11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1]);
    const events = (await auditRowsOf(owner, tenant.tenant.id)).filter((r) => r.action === 'secrets.rotate');
    expect(events.map((e) => [e.details?.from, e.details?.to])).toEqual(
      Array.from({ length: 10 }, (_, i) => [i + 1, i + 2]),
    );
  });
});

describe('a rotation that fails in the middle', () => {
  it('leaves the old version current, with nothing of the new one, and the next rotation works', async () => {
    const { tenant, api, ops } = await tenantCtx(t, root);
    const P = 'sandbox/app/ATOMIC';
    await api.put(P, { value: 'the-old-value', rotation: { intervalDays: 30 } });
    const before = expectOk(await api.get(P), 200, SecretWithValue);

    // The new version is inserted and the secret updated before the previous version's grace is recorded:
    // failing there leaves a half-done rotation inside the transaction.
    const res = await withFailingTrigger(
      owner,
      'coffer.secret_versions',
      'update of served_until',
      tenant.tenant.id,
      () => ops.rotate(P, { value: 'the-new-value' }),
    );
    expectError(res, 500, 'internal');
    expect(res.body).not.toContain('injected');

    const after = expectOk(await api.get(P), 200, SecretWithValue);
    expect(after).toMatchObject({ version: 1, value: 'the-old-value', lastRotatedAt: null });
    expect(after.nextRotationAt).toBe(before.nextRotationAt);
    expectError(await api.get(P, 'previous'), 404, 'not_found');
    const versions = await versionsOf(api, P);
    expect(versions).toHaveLength(1);
    expect(versions[0]?.servedUntil).toBeNull();
    const rows = await auditRowsFor(owner, requestIdOf(res));
    expect(rows.map((r) => [r.action, r.outcome])).toEqual([['secrets.rotate', 'error']]);

    const ok = expectOk(await ops.rotate(P, { value: 'the-new-value' }), 200, SecretMetadata);
    expect(ok.version).toBe(2);
    expect(expectOk(await api.get(P, 'previous'), 200, SecretWithValue).value).toBe('the-old-value');
    expect(firstBrokenLink(await auditRowsOf(owner, tenant.tenant.id))).toBeNull();
  });
});
