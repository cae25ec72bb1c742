import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createIdentity, createTenant, rootToken } from '../support/factories.ts';
import { ownerClient, type Response, secretsApi } from '../support/secrets.ts';
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

/** The forms a leaked string could take: as is, its random core alone, hex and base64. */
function forms(secret: string, core: string = secret): string[] {
  const b = Buffer.from(secret, 'utf8');
  return [secret, core, b.toString('hex'), b.toString('base64'), b.toString('base64url')];
}

function expectAbsent(haystack: string, needles: readonly string[], where: string): void {
  for (const n of needles) expect(haystack.includes(n), `${where} contains a leaked string`).toBe(false);
}

describe('no secret value, token or client secret leaks', () => {
  it('keeps a canary value out of logs, error bodies, audit rows and ciphertexts on every path', async () => {
    const root = await rootToken(t.app);
    const tenant = await createTenant(t.app, root);
    const other = await createTenant(t.app, root);
    const svc = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      policies: [{ path: 'sandbox/leak/PUBLIC', capabilities: ['read', 'write'] }],
    });
    const admin = secretsApi(t.app, tenant.adminToken);
    const service = secretsApi(t.app, svc.token);
    const anonymous = secretsApi(t.app, null);
    const intruder = secretsApi(t.app, other.adminToken);

    const core = randomBytes(16).toString('hex');
    const canary = `cnry_${core}_zz`;
    const C = 'sandbox/leak/CANARY';

    const errors: Response[] = [];
    const others: Response[] = [];
    const valueBearing: Response[] = [];
    /** Runs one request; `carriesValue` marks the reads whose body is meant to hold the value. */
    const step = async (res: Promise<Response>, expected: number, carriesValue = false): Promise<Response> => {
      const r = await res;
      expect(r.statusCode, r.body).toBe(expected);
      if (expected >= 400) errors.push(r);
      else if (carriesValue) valueBearing.push(r);
      else others.push(r);
      return r;
    };

    // Writes, good and bad.
    await step(admin.put(C, { value: canary, description: 'leak canary' }), 201);
    await step(admin.put(C, { value: `${canary}-v2` }), 200);
    await step(admin.put(C, { value: `${canary}-stale`, ifVersion: 1 }), 409);
    await step(admin.put(C, { value: `${canary}-new`, ifVersion: 0 }), 409);
    await step(
      admin.put('sandbox/leak/FORMATTED', { value: '0b5d8d0e-8c4e-4b4e-9e0a-4a8e2f6f3c11', format: 'uuid' }),
      201,
    );
    await step(admin.put('sandbox/leak/FORMATTED', { value: canary }), 422);
    await step(admin.put('sandbox/leak/PATTERNED', { value: canary, format: { pattern: '^[0-9]+$' } }), 422);
    await step(admin.put('sandbox/leak/SIZED', { value: canary, format: { maxLength: 4 } }), 422);
    await step(admin.put('sandbox/leak/HUGE', { value: `${canary}${'x'.repeat(65_536)}` }), 413);
    await step(admin.put('sandbox/leak/NUL', { value: `${canary}\u0000` }), 400);
    await step(admin.put('sandbox/leak/BADRE', { value: canary, format: { pattern: '(' } }), 400);
    await step(admin.put('sandbox/leak/PAST', { value: canary, expiresAt: '2001-01-01T00:00:00Z' }), 400);
    await step(admin.put('sandbox/leak/TYPED', { value: canary, tags: 'not-a-list' }), 400);
    await step(
      admin.send('PUT', '/v1/secrets/sandbox/leak/JSON', `{"value":"${canary}"`, {
        'content-type': 'application/json',
      }),
      400,
    );
    await step(admin.send('PUT', '/v1/secrets/sandbox/leak/TEXT', canary, { 'content-type': 'text/plain' }), 415);
    await step(admin.put('sandbox/leak/1BAD', { value: canary }), 400);
    await step(anonymous.put(C, { value: canary }), 401);
    await step(service.put(C, { value: canary }), 403);
    await step(secretsApi(t.app, root).put(C, { value: canary }), 403);

    // Reads and listings.
    await step(admin.get(C), 200, true);
    await step(admin.get(C, 1), 200, true);
    await step(admin.versions(C), 200);
    await step(admin.list({ prefix: 'CAN' }), 200);
    await step(admin.bundle('sandbox', 'leak'), 200, true);
    await step(service.get(C), 403);
    await step(service.bundle('sandbox', 'leak'), 200);
    await step(intruder.get(C), 404);
    await step(anonymous.get(C), 401);

    // Bundle writes, good and bad.
    await step(admin.writeBundle('sandbox', 'leak', { set: { CANARY: { value: `${canary}-v3`, ifVersion: 2 } } }), 200);
    await step(
      admin.writeBundle('sandbox', 'leak', { set: { CANARY: { value: `${canary}-lost`, ifVersion: 1 } } }),
      409,
    );
    await step(admin.writeBundle('sandbox', 'leak', { set: { FORMATTED: { value: canary } } }), 422);
    await step(
      admin.writeBundle('sandbox', 'leak', { set: { HUGE: { value: `${canary}${'y'.repeat(65_536)}` } } }),
      413,
    );
    await step(admin.writeBundle('sandbox', 'leak', { set: { X: { value: canary } }, delete: ['X'] }), 400);
    await step(service.writeBundle('sandbox', 'leak', { set: { CANARY: { value: canary } } }), 403);

    // Lifecycle.
    await step(admin.put('sandbox/leak/PURGED', { value: canary }), 201);
    await step(admin.remove('sandbox/leak/PURGED'), 204);
    await step(admin.restore('sandbox/leak/PURGED'), 200);
    await step(admin.remove('sandbox/leak/PURGED', true), 204);
    await step(admin.destroy(C, 1), 204);
    await step(admin.get(C, 1), 410);
    await step(admin.destroy(C, 3), 409);

    // Integrity errors: swap the canary's current ciphertext with another secret's.
    await step(admin.put('sandbox/leak/DECOY', { value: 'decoy' }), 201);
    const current = await owner.query<{ secret_id: string; version: number; ciphertext: Buffer }>(
      `select v.secret_id, v.version, v.ciphertext from coffer.secrets s
       join coffer.secret_versions v on v.secret_id = s.id and v.version = s.current_version
       where s.tenant_id = $1 and s.name in ('CANARY', 'DECOY')`,
      [tenant.tenant.id],
    );
    const [x, y] = current.rows;
    if (!x || !y) throw new Error('rows missing');
    for (const [to, from] of [
      [x, y],
      [y, x],
    ] as const) {
      await owner.query('update coffer.secret_versions set ciphertext = $3 where secret_id = $1 and version = $2', [
        to.secret_id,
        to.version,
        from.ciphertext,
      ]);
    }
    const integrity = await step(admin.get(C), 500);
    expect(integrity.json()).toMatchObject({ error: { code: 'integrity_error' } });
    await step(admin.get('sandbox/leak/DECOY'), 500);
    await step(admin.bundle('sandbox', 'leak'), 500);

    // --- What must hold ---
    const canaryForms = forms(canary, core);
    expect(errors.length).toBeGreaterThanOrEqual(25);
    for (const r of errors) {
      expect(r.json()).toHaveProperty('error.code');
      expectAbsent(r.body, canaryForms, `error body ${r.statusCode} of request ${r.headers['x-request-id']}`);
    }
    for (const r of others) expectAbsent(r.body, canaryForms, `body of request ${r.headers['x-request-id']}`);
    // The value does reach the caller where it should: the read paths.
    expect(valueBearing.map((r) => r.body.includes(canary))).toEqual([true, true, true]);
    expect(valueBearing[1]?.json()).toMatchObject({ version: 1, value: canary });

    // Logs: they did capture these requests (including the integrity error), and none carries the value.
    const integrityId = integrity.headers['x-request-id'] as string;
    expect(t.logs.some((l) => l.includes(integrityId) && l.includes('"level":50'))).toBe(true);
    for (const r of errors) expect(t.logs.some((l) => l.includes(r.headers['x-request-id'] as string))).toBe(true);
    t.logs.forEach((line, i) => {
      expectAbsent(line, canaryForms, `log line ${i}`);
    });

    // Audit: every column of every row of this tenant, and of the whole table (401s go to the platform chain).
    const audit = await owner.query<{ row: string }>(
      'select a::text as row from coffer.audit_events a where tenant_id = $1',
      [tenant.tenant.id],
    );
    expect(audit.rows.length).toBeGreaterThanOrEqual(40);
    for (const { row } of audit.rows) expectAbsent(row, canaryForms, 'audit row');
    for (const needle of canaryForms) {
      const hits = await owner.query<{ n: string }>(
        'select count(*) as n from coffer.audit_events a where strpos(a::text, $1) > 0',
        [needle],
      );
      expect(hits.rows[0]?.n).toBe('0');
    }

    // Storage: no ciphertext holds the value or its core, and no metadata column either.
    const stored = await owner.query<{ ciphertext: Buffer | null }>(
      'select ciphertext from coffer.secret_versions where tenant_id = $1',
      [tenant.tenant.id],
    );
    expect(stored.rows.length).toBeGreaterThanOrEqual(4);
    for (const { ciphertext } of stored.rows) {
      if (!ciphertext) continue;
      for (const needle of [canary, core]) expect(ciphertext.includes(Buffer.from(needle))).toBe(false);
    }
    const meta = await owner.query<{ row: string }>(
      'select s::text as row from coffer.secrets s where tenant_id = $1',
      [tenant.tenant.id],
    );
    for (const { row } of meta.rows) expectAbsent(row, canaryForms, 'secrets row');

    // Credentials: the admin's token and client secret, and the service's, appear in no log line and no audit row.
    const credentials = [tenant.adminToken, tenant.admin.clientSecret, svc.token, svc.clientSecret];
    const signatures = [tenant.adminToken, svc.token].map((tok) => tok.split('.')[2] ?? tok);
    const needles = [...credentials, ...signatures];
    t.logs.forEach((line, i) => {
      expectAbsent(line, needles, `log line ${i}`);
    });
    for (const needle of needles) {
      const hits = await owner.query<{ n: string }>(
        'select count(*) as n from coffer.audit_events a where strpos(a::text, $1) > 0',
        [needle],
      );
      expect(hits.rows[0]?.n).toBe('0');
    }
  });
});
