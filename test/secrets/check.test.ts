import { randomBytes } from 'node:crypto';
import { CheckResponse } from '@coffer/contracts';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createIdentity, createTenant, rootToken, uniqueSlug } from '../support/factories.ts';
import { expectError, expectOk, ownerClient, requestIdOf, type SecretsApi, secretsApi } from '../support/secrets.ts';
import { createTestApp, type TestApp } from '../support/test-app.ts';

let t: TestApp;
let owner: pg.Client;

beforeAll(async () => {
  t = await createTestApp();
  owner = await ownerClient();
});
afterAll(async () => {
  await owner.end();
  await t.close();
});

const UUID = '0b5d8d0e-8c4e-4b4e-9e0a-4a8e2f6f3c11';

/** A tenant whose sandbox holds one secret in every state a check can report, each value a distinct canary. */
async function seeded() {
  const root = await rootToken(t.app);
  const tenant = await createTenant(t.app, root);
  const sbx = uniqueSlug('chk');
  const admin = secretsApi(t.app, tenant.adminToken);
  const lister = await createIdentity(t.app, tenant.adminToken, {
    role: 'service',
    policies: [{ path: `sandbox/${sbx}/*`, capabilities: ['list'] }],
  });
  const p = (name: string) => `sandbox/${sbx}/${name}`;
  const canary = (name: string) => `cnry_${name}_${randomBytes(12).toString('hex')}`;
  const values: string[] = [];
  const put = async (name: string, body: Record<string, unknown>) => {
    const value = typeof body.value === 'string' ? body.value : canary(name);
    values.push(value);
    const res = await admin.put(p(name), { ...body, value });
    expect(res.statusCode, res.body).toBeLessThan(300);
  };
  await put('OK', { value: UUID, format: 'uuid' });
  await put('PLAIN', {});
  await put('DELETED', {});
  expect((await admin.remove(p('DELETED'))).statusCode).toBe(204);
  await put('EXPIRED', { expiresAt: new Date(Date.now() + 3_600_000).toISOString() });
  await put('MALFORMED', {});
  await put('PATTERNED', {});
  await put('DUE', { rotation: { intervalDays: 30 } });
  await put('OLD', {});
  // Time passes for three of them: expiry, a due rotation and an old version, set as the owner would see them.
  await owner.query(
    `update coffer.secrets set expires_at = now() - interval '1 hour' where tenant_id = $1 and owner = $2 and name = 'EXPIRED'`,
    [tenant.tenant.id, sbx],
  );
  await owner.query(
    `update coffer.secrets set next_rotation_at = now() - interval '1 day' where tenant_id = $1 and owner = $2 and name = 'DUE'`,
    [tenant.tenant.id, sbx],
  );
  await owner.query(
    `update coffer.secret_versions v set created_at = now() - interval '10 days' from coffer.secrets s
     where s.id = v.secret_id and s.tenant_id = $1 and s.owner = $2 and s.name = 'OLD'`,
    [tenant.tenant.id, sbx],
  );
  // Another owner, with a secret the list-only service may not list.
  const hiddenPath = `sandbox/${sbx}-other/HIDDEN`;
  const hiddenValue = canary('HIDDEN');
  values.push(hiddenValue);
  expect((await admin.put(hiddenPath, { value: hiddenValue })).statusCode).toBe(201);
  return { tenant, sbx, p, admin, lister, values, hiddenPath };
}

type World = Awaited<ReturnType<typeof seeded>>;

const manifestOf = (w: World) => ({
  secrets: [
    { path: w.p('OK') },
    { path: w.p('PLAIN'), format: { minLength: 8 } },
    { path: w.p('NEVER') },
    { path: w.p('OPTIONAL'), required: false },
    { path: w.p('DELETED') },
    { path: w.p('EXPIRED') },
    { path: w.p('MALFORMED'), format: 'uuid' },
    { path: w.p('PATTERNED'), format: { pattern: '^[0-9]+$' } },
    { path: w.p('DUE') },
    { path: w.p('OLD'), maxAgeDays: 7 },
    { path: w.hiddenPath },
    { path: `sandbox/${w.sbx}-other/NOT_THERE` },
  ],
});

async function check(api: SecretsApi, body: unknown) {
  const res = await api.send('POST', '/v1/check', body);
  return { res, body: expectOk(res, 200, CheckResponse) };
}

describe('POST /v1/check', () => {
  it('gives a list-only identity every status, with versions where allowed and never a value', async () => {
    const w = await seeded();
    const { res, body } = await check(secretsApi(t.app, w.lister.token), manifestOf(w));
    const byPath = Object.fromEntries(body.results.map((r) => [r.path, r]));
    const status = (path: string) => [byPath[path]?.status, byPath[path]?.version, byPath[path]?.passed];
    expect(status(w.p('OK'))).toEqual(['ok', 1, true]);
    expect(status(w.p('PLAIN'))).toEqual(['ok', 1, true]);
    expect(status(w.p('NEVER'))).toEqual(['missing', null, false]);
    expect(status(w.p('OPTIONAL'))).toEqual(['missing', null, true]);
    expect(status(w.p('DELETED'))).toEqual(['deleted', 1, false]);
    expect(status(w.p('EXPIRED'))).toEqual(['expired', 1, false]);
    expect(status(w.p('MALFORMED'))).toEqual(['malformed', 1, false]);
    expect(byPath[w.p('MALFORMED')]?.message).toContain('uuid: must be a UUID');
    expect(status(w.p('PATTERNED'))).toEqual(['malformed', 1, false]);
    expect(byPath[w.p('PATTERNED')]?.message).toContain('pattern');
    expect(status(w.p('DUE'))).toEqual(['overdue', 1, false]);
    expect(status(w.p('OLD'))).toEqual(['overdue', 1, false]);
    expect(byPath[w.p('OLD')]?.message).toMatch(/10\.0 days old \(created .*\); the manifest allows 7/);
    // Denied says the same for a secret that is there and one that is not.
    const hidden = byPath[w.hiddenPath];
    const absent = byPath[`sandbox/${w.sbx}-other/NOT_THERE`];
    expect(hidden && { ...hidden, path: '' }).toEqual(absent && { ...absent, path: '' });
    expect(hidden?.status).toBe('denied');
    expect(hidden?.version).toBeNull();
    expect(body.ok).toBe(false);
    expect(body.counts).toEqual({ ok: 2, missing: 2, deleted: 1, expired: 1, malformed: 2, overdue: 2, denied: 2 });
    for (const v of w.values) expect(res.body.includes(v), 'the response holds a value').toBe(false);
    // The same identity may not read a single one of them.
    expectError(await secretsApi(t.app, w.lister.token).get(w.p('OK')), 403, 'forbidden');
  });

  it('uses the stored format when the manifest names none, and passes a run where every entry holds', async () => {
    const w = await seeded();
    const api = secretsApi(t.app, w.lister.token);
    const good = await check(api, { secrets: [{ path: w.p('OK') }, { path: w.p('GONE'), required: false }] });
    expect(good.body.ok).toBe(true);
    // A value that no longer satisfies its stored format (written before the format was set) is malformed.
    await owner.query(
      `update coffer.secrets set format = '"hex"'::jsonb where tenant_id = $1 and owner = $2 and name = 'PLAIN'`,
      [w.tenant.tenant.id, w.sbx],
    );
    const bad = await check(api, { secrets: [{ path: w.p('PLAIN') }] });
    expect(bad.body.results[0]).toMatchObject({ status: 'malformed', passed: false });
    expect(bad.body.results[0]?.message).toContain('hex:');
  });

  it('writes exactly one audit event per run, carrying the counts, and no denial per secret', async () => {
    const w = await seeded();
    const { res, body } = await check(secretsApi(t.app, w.lister.token), manifestOf(w));
    const rows = await owner.query<{ action: string; outcome: string; details: Record<string, unknown> }>(
      'select action, outcome, details from coffer.audit_events where tenant_id = $1 and request_id = $2',
      [w.tenant.tenant.id, requestIdOf(res)],
    );
    expect(rows.rows).toEqual([
      {
        action: 'secrets.check',
        outcome: 'allowed',
        details: { checked: 12, passed: false, ...body.counts },
      },
    ]);
    const audit = await owner.query<{ row: string }>(
      'select a::text as row from coffer.audit_events a where tenant_id = $1',
      [w.tenant.tenant.id],
    );
    for (const { row } of audit.rows) for (const v of w.values) expect(row.includes(v)).toBe(false);
  });

  it('keeps every value out of the logs of a check run, including a failing one', async () => {
    const w = await seeded();
    await check(secretsApi(t.app, w.lister.token), manifestOf(w));
    await check(w.admin, manifestOf(w));
    // A broken pattern is a 400 that names the field, not a 500 and not the value.
    expectError(
      await w.admin.send('POST', '/v1/check', { secrets: [{ path: w.p('PLAIN'), format: { pattern: '(' } }] }),
      400,
      'validation_failed',
    );
    for (const line of t.logs)
      for (const v of w.values) expect(line.includes(v), 'a log line holds a value').toBe(false);
  });

  it('refuses unknown fields, a path listed twice and more than 500 entries; auditors may not check', async () => {
    const w = await seeded();
    const api = secretsApi(t.app, w.lister.token);
    const send = (body: unknown) => api.send('POST', '/v1/check', body);
    expectError(await send({ secrets: [{ path: w.p('OK'), value: 'x' }] }), 400, 'validation_failed');
    expectError(await send({ secrets: [{ path: w.p('OK') }], extra: true }), 400, 'validation_failed');
    expectError(await send({ secrets: [{ path: w.p('OK') }, { path: w.p('OK') }] }), 400, 'validation_failed');
    expectError(await send({ secrets: [{ path: 'sandbox/x' }] }), 400, 'validation_failed');
    const many = Array.from({ length: 501 }, (_, i) => ({ path: w.p(`S${i}`) }));
    expectError(await send({ secrets: many }), 400, 'validation_failed');
    expect((await send({ secrets: many.slice(0, 500) })).statusCode).toBe(200);
    const auditor = await createIdentity(t.app, w.tenant.adminToken, { role: 'auditor' });
    expectError(
      await secretsApi(t.app, auditor.token).send('POST', '/v1/check', { secrets: [{ path: w.p('OK') }] }),
      403,
      'forbidden',
    );
  });
});
