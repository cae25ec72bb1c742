import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PGP_OPTIONS } from '../../apps/api/src/secrets/secrets.queries.ts';
import { bearer, createIdentity, createTenant, type TestTenant } from '../support/factories.ts';
import { ownerClient } from '../support/secrets.ts';
import { createTestApp, type TestApp } from '../support/test-app.ts';

const metricsToken = randomBytes(24).toString('hex');
let t: TestApp;
let owner: pg.Client;
beforeAll(async () => {
  t = await createTestApp({ COFFER_METRICS_TOKEN: metricsToken });
  owner = await ownerClient();
});
afterAll(async () => {
  await owner?.end();
  await t?.close();
});

const put = async (tenant: TestTenant, path: string, value: string) => {
  const res = await t.app.inject({
    method: 'PUT',
    url: `/v1/secrets/${path}`,
    headers: bearer(tenant.adminToken),
    payload: { value },
  });
  expect([200, 201]).toContain(res.statusCode);
};

/** Reads that went in a statement with others, from the batch-size histogram. */
const groupedStatements = async () => {
  const res = await t.app.inject({ url: '/metrics', headers: bearer(metricsToken) });
  const line = (name: string) =>
    Number(
      res.body
        .split('\n')
        .find((l) => l.startsWith(name))
        ?.split(' ')
        .at(-1) ?? Number.NaN,
    );
  return line('coffer_secret_read_batch_size_count') - line('coffer_secret_read_batch_size_bucket{le="1"}');
};

describe('reads that share a statement', () => {
  it('each get their own answer: value, version, 404, 403, 401, integrity_error, and another tenant’s own value', async () => {
    const a = await createTenant(t.app);
    const b = await createTenant(t.app);
    await put(a, 'sandbox/g/ALPHA', 'alpha-value');
    await put(a, 'sandbox/g/BRAVO', 'bravo-value');
    await put(a, 'sandbox/g/CHARLIE', 'charlie-1');
    await put(a, 'sandbox/g/CHARLIE', 'charlie-2');
    await put(b, 'sandbox/g/ALPHA', 'tenant-b-alpha');
    const wide = await createIdentity(t.app, a.adminToken, {
      role: 'service',
      policies: [{ path: 'sandbox/**', capabilities: ['read'] }],
    });
    const narrow = await createIdentity(t.app, a.adminToken, {
      role: 'service',
      policies: [{ path: 'sandbox/g/ALPHA', capabilities: ['read'] }],
    });
    const leaving = await createIdentity(t.app, a.adminToken, {
      role: 'service',
      policies: [{ path: 'sandbox/**', capabilities: ['read'] }],
    });
    const other = await createIdentity(t.app, b.adminToken, {
      role: 'service',
      policies: [{ path: 'sandbox/**', capabilities: ['read'] }],
    });
    // `leaving` reads once (its principal is cached), then is disabled: the statement's revision check refuses it.
    expect(
      (await t.app.inject({ url: '/v1/secrets/sandbox/g/ALPHA', headers: bearer(leaving.token) })).statusCode,
    ).toBe(200);
    const disabled = await t.app.inject({
      method: 'PATCH',
      url: `/v1/identities/${leaving.identity.id}`,
      headers: bearer(a.adminToken),
      payload: { disabled: true },
    });
    expect(disabled.statusCode).toBe(200);
    // BRAVO's ciphertext is now under another key: pgcrypto fails that read, and with it the statement it shares.
    await owner.query(
      `update coffer.secret_versions v set ciphertext = pgp_sym_encrypt('x', $2, $3)
         from coffer.secrets s where s.id = v.secret_id and s.tenant_id = $1 and s.name = 'BRAVO'`,
      [a.tenant.id, randomBytes(32).toString('hex'), PGP_OPTIONS],
    );

    const cases: { token: string; path: string; status: number; value?: string; code?: string }[] = [
      { token: wide.token, path: 'sandbox/g/ALPHA', status: 200, value: 'alpha-value' },
      { token: wide.token, path: 'sandbox/g/BRAVO', status: 500, code: 'integrity_error' },
      { token: wide.token, path: 'sandbox/g/CHARLIE?version=1', status: 200, value: 'charlie-1' },
      { token: wide.token, path: 'sandbox/g/CHARLIE', status: 200, value: 'charlie-2' },
      { token: wide.token, path: 'sandbox/g/CHARLIE?version=previous', status: 200, value: 'charlie-1' },
      { token: wide.token, path: 'sandbox/g/DELTA', status: 404, code: 'not_found' },
      { token: narrow.token, path: 'sandbox/g/ALPHA', status: 200, value: 'alpha-value' },
      { token: narrow.token, path: 'sandbox/g/CHARLIE', status: 403, code: 'forbidden' },
      { token: leaving.token, path: 'sandbox/g/ALPHA', status: 401, code: 'unauthorized' },
      { token: other.token, path: 'sandbox/g/ALPHA', status: 200, value: 'tenant-b-alpha' },
    ];
    const before = await groupedStatements();
    // Enough at once that reads queue behind the statements in flight and go together.
    const rounds = 6;
    const all = Array.from({ length: rounds }, () => cases).flat();
    const responses = await Promise.all(
      all.map((c) => t.app.inject({ url: `/v1/secrets/${c.path}`, headers: bearer(c.token) })),
    );
    for (const [i, res] of responses.entries()) {
      const c = all[i] as (typeof all)[number];
      const label = `${c.path} as ${c.token === wide.token ? 'wide' : c.token === narrow.token ? 'narrow' : c.token === leaving.token ? 'leaving' : 'other'}`;
      expect(res.statusCode, label).toBe(c.status);
      if (c.value !== undefined) expect(res.json().value, label).toBe(c.value);
      if (c.code !== undefined) expect(res.json().error.code, label).toBe(c.code);
      // No read ever carries another read's value.
      if (c.value === undefined) expect(res.body, label).not.toMatch(/alpha-value|charlie-|tenant-b-alpha/);
      expect(res.body, label).not.toContain('bravo-value');
    }
    expect(await groupedStatements()).toBeGreaterThan(before);
  });
});
