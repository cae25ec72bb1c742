import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { type Api, type Cluster, call, clusterSuite, isEnvelope, type Keys, tenantOn } from './harness.ts';
import { recordOutcome } from './results.ts';

let cluster: Cluster;
let api: Api;
let keys: Keys;
clusterSuite(
  {
    apis: [
      {
        COFFER_DB_POOL_MAX: '3',
        COFFER_DB_ACQUIRE_TIMEOUT_MS: '1000',
        COFFER_DB_LOCK_TIMEOUT_MS: '1000',
        COFFER_DB_STATEMENT_TIMEOUT_MS: '30000',
      },
    ],
  },
  (s) => {
    ({ cluster, keys } = s);
    [api] = s.apis;
  },
);

describe('a lock held on a secret exhausts the pool', () => {
  it('answers 503 within the configured timeouts and recovers when the lock is released', async () => {
    const { tenantId, adminToken } = await tenantOn(api, keys);
    await call(api.base, 'PUT', '/v1/secrets/sandbox/lock/HOT', { token: adminToken, body: { value: 'v0' } });
    await call(api.base, 'PUT', '/v1/secrets/sandbox/lock/COLD', { token: adminToken, body: { value: 'c' } });

    const holder = new pg.Client({ connectionString: cluster.ownerUrl });
    // The cluster stops after this file even when an assertion below fails first: that must not crash the run.
    holder.on('error', () => undefined);
    await holder.connect();
    await holder.query('begin');
    await holder.query(`select set_config('app.tenant_id', $1, true)`, [tenantId]);
    await holder.query(`select 1 from coffer.secrets where name = 'HOT' for update`);

    const started = Date.now();
    const writes = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        call(api.base, 'PUT', '/v1/secrets/sandbox/lock/HOT', { token: adminToken, body: { value: `v${i}` } }),
      ),
    );
    const elapsed = Date.now() - started;
    const statuses = writes.map((w) => w.status);
    expect(statuses.every((s) => s === 503)).toBe(true);
    expect(writes.every((w) => isEnvelope(w.body) && Number(w.headers.get('retry-after')) > 0)).toBe(true);
    // Each waits at most an acquire timeout (1 s) for a connection, then a lock timeout (1 s): a few seconds on a
    // busy machine, never the 30 s statement timeout, which is what a missing lock timeout would cost.
    expect(Math.max(...writes.map((w) => w.ms))).toBeLessThan(15_000);

    await holder.query('rollback');
    await holder.end();
    const after = await call(api.base, 'PUT', '/v1/secrets/sandbox/lock/HOT', {
      token: adminToken,
      body: { value: 'after' },
    });
    expect(after.status).toBe(200);
    const read = await call(api.base, 'GET', '/v1/secrets/sandbox/lock/HOT', { token: adminToken });
    expect((read.body as { value: string }).value).toBe('after');
    recordOutcome('pool-exhaustion', {
      requests: writes.length,
      refusedWith503: statuses.filter((s) => s === 503).length,
      slowestMs: Math.round(Math.max(...writes.map((w) => w.ms))),
      allAnsweredWithinMs: elapsed,
      recovered: after.status === 200,
    });
  });
});
