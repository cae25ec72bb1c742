import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, createTenant } from '../support/factories.ts';
import { createTestApp, type TestApp } from '../support/test-app.ts';

const metricsToken = randomBytes(24).toString('hex');
let t: TestApp;
beforeAll(async () => {
  t = await createTestApp({
    COFFER_METRICS_TOKEN: metricsToken,
    COFFER_METRICS_TENANT_LABELS: '1',
    COFFER_RATE_LIMIT_PER_SECOND: '3',
  });
});
afterAll(() => t.close());

const scrape = async () => {
  const res = await t.app.inject({ url: '/metrics', headers: { authorization: `Bearer ${metricsToken}` } });
  expect(res.statusCode).toBe(200);
  expect(res.headers['content-type']).toMatch(/text\/plain/);
  return res.body;
};
const value = (text: string, name: string, labels: Record<string, string> = {}) => {
  const line = text
    .split('\n')
    .find((l) =>
      l.startsWith(`${name}{`) || l.startsWith(`${name} `)
        ? Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`))
        : false,
    );
  return line ? Number(line.split(' ').at(-1)) : undefined;
};

describe('/metrics', () => {
  it('is refused without its token, and never shown in the OpenAPI document', async () => {
    expect((await t.app.inject({ url: '/metrics' })).statusCode).toBe(401);
    expect((await t.app.inject({ url: '/metrics', headers: { authorization: 'Bearer nope' } })).statusCode).toBe(401);
    expect((await t.app.inject({ url: '/openapi.json' })).body).not.toContain('/metrics');
  });

  it('counts requests per route and status, secret reads and writes, logins, audit commits, pool waits and rate limits', async () => {
    const tenant = await createTenant(t.app);
    const h = bearer(tenant.adminToken);
    await t.app.inject({ method: 'PUT', url: '/v1/secrets/sandbox/m/K', headers: h, payload: { value: 'v' } });
    await t.app.inject({ url: '/v1/secrets/sandbox/m/K', headers: h });
    await t.app.inject({ url: '/v1/secrets/sandbox/m/NOPE', headers: h });
    for (let i = 0; i < 5; i++) await t.app.inject({ url: '/v1/auth/whoami', headers: h });
    await new Promise((r) => setTimeout(r, 1100));
    const text = await scrape();
    expect(value(text, 'coffer_http_requests_total', { route: 'getSecret', status: '200' })).toBeGreaterThanOrEqual(1);
    expect(value(text, 'coffer_http_requests_total', { route: 'getSecret', status: '404' })).toBeGreaterThanOrEqual(1);
    expect(value(text, 'coffer_http_request_duration_seconds_count', { route: 'putSecret' })).toBeGreaterThanOrEqual(1);
    expect(value(text, 'coffer_secret_operations_total', { op: 'read' })).toBeGreaterThanOrEqual(1);
    expect(value(text, 'coffer_secret_operations_total', { op: 'write' })).toBeGreaterThanOrEqual(1);
    expect(value(text, 'coffer_token_logins_total', { outcome: 'allowed' })).toBeGreaterThanOrEqual(1);
    expect(value(text, 'coffer_audit_batch_size_count')).toBeGreaterThanOrEqual(1);
    expect(value(text, 'coffer_audit_commit_seconds_count')).toBeGreaterThanOrEqual(1);
    expect(value(text, 'coffer_db_pool_wait_seconds_count')).toBeGreaterThanOrEqual(1);
    expect(value(text, 'coffer_db_pool_connections')).toBeGreaterThanOrEqual(1);
    expect(value(text, 'coffer_rate_limited_total', { kind: 'identity' })).toBeGreaterThanOrEqual(1);
    expect(value(text, 'coffer_process_resident_memory_bytes')).toBeGreaterThan(0);
  });

  it('keeps tenant labels bounded: only the top tenants by traffic are named, the rest are "other"', async () => {
    for (let i = 0; i < 3; i++) {
      const tenant = await createTenant(t.app);
      for (let j = 0; j < 2; j++) {
        await t.app.inject({
          method: 'PUT',
          url: `/v1/secrets/sandbox/m/K${j}`,
          headers: bearer(tenant.adminToken),
          payload: { value: 'v' },
        });
      }
    }
    const text = await scrape();
    const tenants = new Set(
      text
        .split('\n')
        .filter((l) => l.startsWith('coffer_secret_operations_total{'))
        .map((l) => /tenant="([^"]+)"/.exec(l)?.[1]),
    );
    // COFFER_METRICS_TENANT_LABELS=1: at most one tenant id plus "other".
    expect([...tenants].filter((x) => x !== 'other').length).toBeLessThanOrEqual(1);
    // Never a label that carries a secret path or value.
    expect(text).not.toMatch(/sandbox\/m\//);
  });
});
