import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { TenantKeySet } from '../crypto/tenant-key-cache.ts';
import { type DataKeyServiceDeps, dataKeyService } from './data-keys.service.ts';

/**
 * The re-encryption job's pacing, on its own: batches of `batchSize` that each take ~30 ms of (simulated) database
 * time. Its SQL runs against PostgreSQL in test/keys; here only the pauses between batches are under test.
 */
function pacedRekey(dutyCycle: number | undefined, batches: number) {
  let left = batches;
  const calls: number[] = [];
  const started = performance.now();
  const deps = {
    db: { withTenant: async () => [] },
    queries: {
      reencryptBatch: async (_t: string, _k: unknown, _v: number, _a: string, size: number) => {
        calls.push(performance.now() - started);
        await new Promise((r) => setTimeout(r, 30));
        return left-- > 0 ? size : 0;
      },
    },
    keys: { get: async () => ({}) as TenantKeySet, invalidate: () => undefined },
    audit: {},
    webhookOutbox: {},
    keyring: {},
    log: pino({ level: 'silent' }),
    batchSize: 10,
    ...(dutyCycle !== undefined ? { dutyCycle } : {}),
  } as unknown as DataKeyServiceDeps;
  return { service: dataKeyService(deps), calls, started };
}

describe('re-encryption pacing (COFFER_REKEY_DUTY_CYCLE)', () => {
  it('at a duty cycle of 0.5 pauses after each full batch at least as long as the batch took', async () => {
    const { service, calls } = pacedRekey(0.5, 3);
    expect(await service.rekey('t')).toBe(30);
    expect(calls).toHaveLength(4);
    // Each batch starts no sooner than two batch-lengths (work, then as long a pause) after the one before.
    for (let i = 1; i < calls.length; i++) {
      expect((calls[i] as number) - (calls[i - 1] as number)).toBeGreaterThanOrEqual(58);
    }
  });

  it('without a duty cycle runs batch after batch', async () => {
    const { service, calls } = pacedRekey(undefined, 3);
    expect(await service.rekey('t')).toBe(30);
    expect(calls).toHaveLength(4);
  });
});
