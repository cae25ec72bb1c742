import { type RouteDef, routes } from '@coffer/contracts';
import { bearer, createTenant } from './factories.ts';
import { createTestApp, type TestApp } from './test-app.ts';

/** Cases per fuzzing property (the schema-edge property runs a fifth of them); FUZZ_RUNS raises it for a deep run. */
export const FUZZ_RUNS = Number(process.env.FUZZ_RUNS ?? 10_000);

// A valid request to the audit follow stream is answered by a stream that lasts maxSeconds (an hour by default), so
// it is left out here; test/audit/audit-follow.test.ts and the security matrix drive it with short sessions.
export const fuzzedRoutes = (Object.entries(routes) as [string, RouteDef][]).filter(
  ([, def]) => !def.produces?.includes('text/event-stream'),
);

export interface FuzzTarget {
  t: TestApp;
  tenantId: string;
  /** The tenant admin's token. */
  token: string;
}

/** A test app that lets one address send thousands of bad requests, and a tenant holding sandbox/fuzz/KEY. */
export async function fuzzTarget(): Promise<FuzzTarget> {
  const t = await createTestApp({
    COFFER_RATE_LIMIT_PER_SECOND: '1000000',
    COFFER_LOGIN_RATE_LIMIT_PER_MINUTE: '1000000',
    COFFER_LOGIN_MAX_FAILURES: '1000000',
    // Most fuzzed requests carry no or a bad token, all from one address: the per-source budget would refuse the
    // suite's own requests after a few hundred.
    COFFER_AUTH_FAILURES_PER_MINUTE: '1000000',
  });
  const tenant = await createTenant(t.app);
  const put = await t.app.inject({
    method: 'PUT',
    url: '/v1/secrets/sandbox/fuzz/KEY',
    headers: bearer(tenant.adminToken),
    payload: { value: 'v' },
  });
  if (put.statusCode >= 300) throw new Error(`the fuzzing tenant's secret: ${put.statusCode} ${put.body}`);
  return { t, tenantId: tenant.tenant.id, token: tenant.adminToken };
}
