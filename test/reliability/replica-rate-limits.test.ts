import { describe, expect, it } from 'vitest';
import { type Api, call, clusterSuite, type Keys, sleep, tenantOn, token } from './harness.ts';
import { recordOutcome } from './results.ts';

let keys: Keys;
let a: Api;
let b: Api;
const replica = { COFFER_RATE_LIMIT_PER_SECOND: '10' };
clusterSuite({ apis: [replica, replica] }, (s) => {
  ({ keys } = s);
  [a, b] = s.apis;
});

describe('rate limits across replicas', () => {
  it('an identity gets its limit across the fleet, not once per replica', async () => {
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
