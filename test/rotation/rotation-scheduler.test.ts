import { RotationDue, RotationLog, SecretMetadata, SecretVersions, SecretWithValue } from '@coffer/contracts';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditRowsOf, firstBrokenLink } from '../support/audit.ts';
import { rootToken } from '../support/factories.ts';
import { makeDue, secretIdOf, withFailingTrigger } from '../support/ops.ts';
import { expectOk, ownerClient, secretsApi } from '../support/secrets.ts';
import { tenantCtx } from '../support/suite.ts';
import { createTestApp, type TestApp } from '../support/test-app.ts';

/**
 * The scheduler, driven by hand through `app.jobs.rotation.runDue()`. Other test files share the database, and a
 * scheduler here may rotate their due secrets too: every assertion is about this file's own tenants.
 */

let a: TestApp;
let b: TestApp;
let owner: pg.Client;
let root: string;

beforeAll(async () => {
  [a, b] = await Promise.all([createTestApp(), createTestApp()]);
  owner = await ownerClient();
  root = await rootToken(a.app);
});
afterAll(async () => {
  await owner.end();
  await Promise.all([a.close(), b.close()]);
});

const DAY = 86_400_000;
const GENERATOR = { length: 32, charset: 'hex' as const, prefix: 'gen_' };

interface StoredSecret {
  current_version: number;
  versions: number;
  rotations: number;
}

/** What the database holds for one secret: its current version, how many versions, how many rotation events. */
async function stored(tenantId: string, path: string): Promise<StoredSecret> {
  const id = await secretIdOf(owner, tenantId, path);
  const { rows } = await owner.query<StoredSecret>(
    `select s.current_version,
       (select count(*)::int from coffer.secret_versions v where v.secret_id = s.id) as versions,
       (select count(*)::int from coffer.audit_events e
         where e.tenant_id = s.tenant_id and e.action = 'secrets.rotate' and e.resource = $2 and e.outcome = 'allowed') as rotations
     from coffer.secrets s where s.id = $1`,
    [id, path],
  );
  const row = rows[0];
  if (!row) throw new Error(`no secret ${path}`);
  return row;
}

async function scheduleOf(secretId: string): Promise<{ due_at: Date; automatic: boolean } | undefined> {
  const { rows } = await owner.query<{ due_at: Date; automatic: boolean }>(
    'select due_at, automatic from coffer.rotation_schedule where secret_id = $1',
    [secretId],
  );
  return rows[0];
}

describe('the rotation scheduler', () => {
  it('with two app instances on one database rotates each due secret exactly once', async () => {
    const { tenant, api, ops } = await tenantCtx(a, root);
    const tid = tenant.tenant.id;
    const names = Array.from({ length: 30 }, (_, i) => `sandbox/fleet/KEY_${String(i).padStart(2, '0')}`);
    const original = new Map<string, string>();
    await Promise.all(
      names.map(async (p, i) => {
        original.set(p, `original-${i}`);
        expectOk(
          await api.put(p, { value: `original-${i}`, rotation: { intervalDays: 30, generator: GENERATOR } }),
          201,
          SecretMetadata,
        );
      }),
    );
    // Due too, but not the scheduler's to rotate: no generator, and a deleted secret.
    await api.put('sandbox/fleet/MANUAL', { value: 'manual-1', rotation: { intervalDays: 30 } });
    await api.put('sandbox/fleet/DELETED', {
      value: 'deleted-1',
      rotation: { intervalDays: 30, generator: GENERATOR },
    });
    const deletedId = await secretIdOf(owner, tid, 'sandbox/fleet/DELETED');
    expect((await api.remove('sandbox/fleet/DELETED')).statusCode).toBe(204);
    // Not due yet.
    await api.put('sandbox/fleet/LATER', { value: 'later-1', rotation: { intervalDays: 30, generator: GENERATOR } });

    const ids: string[] = [];
    for (const p of [...names, 'sandbox/fleet/MANUAL']) ids.push(await secretIdOf(owner, tid, p));
    await makeDue(owner, tid, [...ids, deletedId]);
    expect(expectOk(await ops.due({ within: '1h' }), 200, RotationDue).items).toHaveLength(31);

    const started = Date.now();
    // Other files' schedulers share the database and may take some of these: what matters is each was rotated once.
    await Promise.all([
      a.app.jobs.rotation.runDue(),
      b.app.jobs.rotation.runDue(),
      a.app.jobs.rotation.runDue(),
      b.app.jobs.rotation.runDue(),
    ]);

    for (const p of names) {
      expect({ p, ...(await stored(tid, p)) }).toEqual({ p, current_version: 2, versions: 2, rotations: 1 });
      const current = expectOk(await api.get(p), 200, SecretWithValue);
      expect(current.version).toBe(2);
      expect(current.value).toMatch(/^gen_[0-9a-f]{32}$/);
      expect(expectOk(await api.get(p, 'previous'), 200, SecretWithValue).value).toBe(original.get(p));
      // The next rotation is an interval after this one, and the schedule agrees.
      const last = Date.parse(current.lastRotatedAt ?? '');
      expect(last).toBeGreaterThanOrEqual(started - 1000);
      expect(Date.parse(current.nextRotationAt ?? '')).toBe(last + 30 * DAY);
      const schedule = await scheduleOf(await secretIdOf(owner, tid, p));
      expect(schedule?.due_at.getTime()).toBe(last + 30 * DAY);
    }
    const values = await Promise.all(names.map(async (p) => expectOk(await api.get(p), 200, SecretWithValue).value));
    expect(new Set(values).size).toBe(30);

    expect(await stored(tid, 'sandbox/fleet/MANUAL')).toEqual({ current_version: 1, versions: 1, rotations: 0 });
    expect(await stored(tid, 'sandbox/fleet/LATER')).toEqual({ current_version: 1, versions: 1, rotations: 0 });
    expect(await stored(tid, 'sandbox/fleet/DELETED')).toEqual({ current_version: 1, versions: 1, rotations: 0 });
    // The manual-only secret is still due, and says the service cannot rotate it itself.
    expect(expectOk(await ops.due({ within: '1h' }), 200, RotationDue).items).toMatchObject([
      { path: 'sandbox/fleet/MANUAL', overdue: true, automatic: false },
    ]);

    // Another round finds nothing of ours to do.
    await Promise.all([a.app.jobs.rotation.runDue(), b.app.jobs.rotation.runDue()]);
    for (const p of names) expect((await stored(tid, p)).current_version).toBe(2);

    // Each scheduled rotation is in the rotation log once, as the scheduler's.
    const log = expectOk(await ops.log({ limit: 100 }), 200, RotationLog).items;
    expect(log).toHaveLength(30);
    expect(new Set(log.map((e) => e.path))).toEqual(new Set(names));
    for (const e of log) {
      expect(e).toMatchObject({
        trigger: 'scheduler',
        actorId: null,
        actorName: 'scheduler',
        outcome: 'allowed',
        fromVersion: 1,
        toVersion: 2,
        errorCode: null,
      });
    }
    expect(firstBrokenLink(await auditRowsOf(owner, tid))).toBeNull();
  });

  it('records a scheduled rotation that fails the format, keeps the version, and retries it an hour later', async () => {
    const { tenant, api, ops } = await tenantCtx(a, root);
    const tid = tenant.tenant.id;
    const P = 'shared/ops/HEX_KEY';
    // Built-in hex needs an even number of digits: a 31-digit generator can never satisfy it.
    await api.put(P, {
      value: 'abcd',
      format: 'hex',
      rotation: { intervalDays: 7, generator: { length: 31, charset: 'hex' } },
    });
    const id = await secretIdOf(owner, tid, P);
    await makeDue(owner, tid, [id]);

    const before = Date.now();
    await a.app.jobs.rotation.runDue();
    expect(await stored(tid, P)).toEqual({ current_version: 1, versions: 1, rotations: 0 });
    expect(expectOk(await api.get(P), 200, SecretWithValue)).toMatchObject({ version: 1, value: 'abcd' });
    const schedule = await scheduleOf(id);
    expect(schedule?.automatic).toBe(true);
    expect(Math.abs((schedule?.due_at.getTime() ?? 0) - (before + 3_600_000))).toBeLessThan(60_000);

    const failures = (await auditRowsOf(owner, tid)).filter((r) => r.action === 'secrets.rotate');
    expect(failures).toHaveLength(1);
    expect(failures[0]).toMatchObject({
      actor_id: null,
      actor_name: 'scheduler',
      outcome: 'error',
      error_code: 'unprocessable',
      resource: P,
      version: 1,
      details: { from: 1, trigger: 'scheduler' },
    });
    expect(expectOk(await ops.log(), 200, RotationLog).items).toMatchObject([
      { path: P, trigger: 'scheduler', outcome: 'error', errorCode: 'unprocessable', fromVersion: 1, toVersion: null },
    ]);

    // Postponed: another pass right away does not try again.
    await b.app.jobs.rotation.runDue();
    expect((await auditRowsOf(owner, tid)).filter((r) => r.action === 'secrets.rotate')).toHaveLength(1);
    // The secret is still overdue for its owners to see.
    expect(expectOk(await ops.due(), 200, RotationDue).items).toMatchObject([
      { path: P, overdue: true, automatic: true },
    ]);
  });

  it('an instance whose cached data keys were rotated elsewhere still rotates, under the new key', async () => {
    const { tenant, api, ops } = await tenantCtx(a, root);
    const tid = tenant.tenant.id;
    const P = 'sandbox/app/STALE';
    await api.put(P, { value: 'sealed-by-v1', rotation: { intervalDays: 5, generator: GENERATOR } });
    // Instance b loads (and caches) the tenant's keys; instance a then rotates the data key.
    expect((await secretsApi(b.app, tenant.adminToken).get(P)).statusCode).toBe(200);
    expect((await ops.rotateKey()).statusCode).toBe(202);
    await a.app.jobs.rekey.rekey(tid);
    await makeDue(owner, tid, [await secretIdOf(owner, tid, P)]);

    await b.app.jobs.rotation.runDue();
    expect(await stored(tid, P)).toEqual({ current_version: 2, versions: 2, rotations: 1 });
    const { rows } = await owner.query<{ version: number; dek_version: number }>(
      'select version, dek_version from coffer.secret_versions where secret_id = $1 order by version',
      [await secretIdOf(owner, tid, P)],
    );
    expect(rows).toEqual([
      { version: 1, dek_version: 2 },
      { version: 2, dek_version: 2 },
    ]);
    expect(expectOk(await api.get(P), 200, SecretWithValue).value).toMatch(/^gen_[0-9a-f]{32}$/);
    expect(expectOk(await api.get(P, 'previous'), 200, SecretWithValue).value).toBe('sealed-by-v1');
  });

  it('a scheduled rotation that crashes half-way leaves the old version current, is postponed, and a later pass rotates once', async () => {
    const { tenant, api } = await tenantCtx(a, root);
    const tid = tenant.tenant.id;
    const P = 'sandbox/app/CRASHY';
    await api.put(P, { value: 'before-crash', rotation: { intervalDays: 10, generator: GENERATOR } });
    const id = await secretIdOf(owner, tid, P);
    await makeDue(owner, tid, [id]);
    const dueBefore = (await scheduleOf(id))?.due_at.getTime() ?? 0;

    // The new version is written and the secret moved to it; then recording the old version's grace fails.
    await withFailingTrigger(owner, 'coffer.secret_versions', 'update of served_until', tid, async () => {
      // Both instances try (again, should another file's scheduler hold the row at that moment) until one has hit
      // the failure.
      let failed = 0;
      for (let i = 0; i < 10 && failed === 0; i++) {
        const passes = await Promise.all([a.app.jobs.rotation.runDue(), b.app.jobs.rotation.runDue()]);
        failed = passes.reduce((n, p) => n + p.failed, 0);
      }
      expect(failed).toBe(1);
      // Old version current, no trace of the new one: neither both nor none.
      expect(await stored(tid, P)).toEqual({ current_version: 1, versions: 1, rotations: 0 });
      expect(expectOk(await api.get(P), 200, SecretWithValue)).toMatchObject({ version: 1, value: 'before-crash' });
      // Postponed by an hour, and the failure is on the record.
      expect((await scheduleOf(id))?.due_at.getTime()).toBeGreaterThan(dueBefore + 3_500_000);
      const { rows } = await owner.query<{ outcome: string; error_code: string; resource: string }>(
        `select outcome, error_code, resource from coffer.audit_events
          where tenant_id = $1 and action = 'secrets.rotate' order by seq`,
        [tid],
      );
      expect(rows).toEqual([{ outcome: 'error', error_code: 'internal', resource: P }]);
    });

    await makeDue(owner, tid, [id]);
    await Promise.all([a.app.jobs.rotation.runDue(), b.app.jobs.rotation.runDue()]);
    expect(await stored(tid, P)).toEqual({ current_version: 2, versions: 2, rotations: 1 });
    const current = expectOk(await api.get(P), 200, SecretWithValue);
    expect(current.value).toMatch(/^gen_[0-9a-f]{32}$/);
    expect(expectOk(await api.get(P, 'previous'), 200, SecretWithValue).value).toBe('before-crash');
    const versions = expectOk(await api.versions(P), 200, SecretVersions).items;
    expect(versions.map((v) => v.state)).toEqual(['current', 'previous']);
    expect(firstBrokenLink(await auditRowsOf(owner, tid))).toBeNull();
  });

  // Regression: an unexpected error on one secret ended the pass, and the next pass claimed the same earliest-due
  // secret first, so nothing behind it was ever rotated. Now it is recorded, postponed, and the pass goes on.
  it('one secret whose rotation keeps failing does not stop the scheduler rotating the others', async () => {
    const x = await tenantCtx(a, root);
    const y = await tenantCtx(a, root);
    await x.api.put('sandbox/app/POISON', { value: 'p', rotation: { intervalDays: 5, generator: GENERATOR } });
    await y.api.put('sandbox/app/VICTIM', { value: 'v', rotation: { intervalDays: 5, generator: GENERATOR } });
    const poison = await secretIdOf(owner, x.tenant.tenant.id, 'sandbox/app/POISON');
    await makeDue(owner, x.tenant.tenant.id, [poison], '3650 days');
    await makeDue(owner, y.tenant.tenant.id, [await secretIdOf(owner, y.tenant.tenant.id, 'sandbox/app/VICTIM')]);
    try {
      await withFailingTrigger(
        owner,
        'coffer.secret_versions',
        'update of served_until',
        x.tenant.tenant.id,
        async () => {
          for (let i = 0; i < 2; i++) await a.app.jobs.rotation.runDue().catch(() => undefined);
          expect((await stored(y.tenant.tenant.id, 'sandbox/app/VICTIM')).current_version).toBe(2);
        },
      );
    } finally {
      // Take the poison out of everyone's way.
      await owner.query(
        `update coffer.rotation_schedule set due_at = now() + interval '30 days' where secret_id = $1`,
        [poison],
      );
    }
  });
});
