import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Api,
  type Cluster,
  call,
  type Keys,
  makeKeys,
  sleep,
  startApi,
  startCluster,
  tenantOn,
  token,
} from './harness.ts';
import { recordOutcome } from './results.ts';

let cluster: Cluster;
let keys: Keys;
const apis: Api[] = [];

beforeAll(async () => {
  cluster = await startCluster();
  keys = makeKeys();
  for (let i = 0; i < 2; i++) apis.push(await startApi(cluster.ownerUrl, keys, { COFFER_RATE_LIMIT_PER_SECOND: '10' }));
});
afterAll(async () => {
  for (const a of apis) await a.stop();
  await cluster?.destroy();
});

describe('rate limits across replicas', () => {
  it('an identity gets its limit across the fleet, not once per replica', async () => {
    const [a, b] = apis as [Api, Api];
    const t = await tenantOn(a, keys);
    const onB = await token(b.base, t.admin.clientId, t.admin.clientSecret);
    // Both replicas have heartbeated at start; wait one more beat so each counts the other.
    await sleep(5_500);
    let best = 0;
    for (let round = 0; round < 3; round++) {
      // Align to the start of a rate-limit window, then burst 20 requests at each replica.
      await sleep(1000 - (Date.now() % 1000) + 20);
      const replies = await Promise.all([
        ...Array.from({ length: 20 }, () => call(a.base, 'GET', '/v1/auth/whoami', { token: t.adminToken })),
        ...Array.from({ length: 20 }, () => call(b.base, 'GET', '/v1/auth/whoami', { token: onB })),
      ]);
      const allowed = replies.filter((r) => r.status === 200).length;
      expect(replies.every((r) => r.status === 200 || r.status === 429)).toBe(true);
      best = Math.max(best, allowed);
    }
    // Each replica lets through its share (10 / 2 replicas = 5 a second): 10 across both, not 20. Allow one window
    // boundary inside a burst.
    expect(best).toBeLessThanOrEqual(12);
    expect(best).toBeGreaterThanOrEqual(8);
    recordOutcome('rate-limits-across-replicas', { limitPerSecond: 10, replicas: 2, mostAllowedInOneSecond: best });
  });
});
