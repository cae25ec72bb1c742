import { describe, expect, it } from 'vitest';
import { type Api, type Cluster, call, clusterSuite, type Keys, sleep, startApi, tenantOn } from './harness.ts';
import { recordOutcome } from './results.ts';

let cluster: Cluster;
let keys: Keys;
clusterSuite({}, (s) => {
  ({ cluster, keys } = s);
});

describe('SIGTERM under load', () => {
  it('finishes in-flight requests, refuses new ones with 503, and exits 0 without logging errors', async () => {
    const api: Api = await startApi(cluster.ownerUrl, keys, { COFFER_SHUTDOWN_TIMEOUT_MS: '10000' });
    const { adminToken } = await tenantOn(api, keys);
    // Logins take a scrypt run (tens of ms): real in-flight work when the signal lands.
    const body = { value: 'v' };
    await call(api.base, 'PUT', '/v1/secrets/sandbox/term/K', { token: adminToken, body });
    let stop = false;
    const results: number[] = [];
    const worker = async () => {
      while (!stop) {
        const r = await call(api.base, 'GET', '/v1/secrets/sandbox/term/K', { token: adminToken, timeoutMs: 15_000 });
        results.push(r.status);
        if (r.status !== 200) await sleep(20);
      }
    };
    const workers = Array.from({ length: 8 }, () => worker());
    await sleep(800);
    const before = results.length;
    const signalledAt = Date.now();
    api.kill('SIGTERM');
    const code = await api.exited;
    const exitedAfterMs = Date.now() - signalledAt;
    stop = true;
    await Promise.all(workers);

    expect(code).toBe(0);
    expect(exitedAfterMs).toBeLessThan(10_000);
    const afterSignal = results.slice(before);
    // Every answer is either a completed read or a clean refusal; connections refused after the port closed are 0.
    expect(afterSignal.every((s) => s === 200 || s === 503 || s === 0)).toBe(true);
    expect(results.filter((s) => s === 200).length).toBeGreaterThan(0);
    const errorLines = api
      .output()
      .split('\n')
      .filter((l) => /"level":(50|60)/.test(l));
    expect(errorLines).toEqual([]);
    recordOutcome('sigterm-under-load', {
      exitCode: code,
      exitedAfterMs,
      answeredAfterSignal: afterSignal.length,
      refusedWith503: afterSignal.filter((s) => s === 503).length,
      completedAfterSignal: afterSignal.filter((s) => s === 200).length,
      errorsLogged: errorLines.length,
    });
  });
});
