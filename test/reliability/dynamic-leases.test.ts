import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asLease, READ_ITEMS, type TargetCorner, targetCorner } from '../support/target-db.ts';
import {
  type Api,
  type Cluster,
  call,
  clusterSuite,
  type Keys,
  sleep,
  startApi,
  startCluster,
  tenantOn,
  token,
} from './harness.ts';
import { recordOutcome } from './results.ts';

/**
 * Dynamic credentials under faults, with the built server as a process: the API killed in the middle of revoking
 * leases, and the target database stopped while leases expire. Both clusters log every statement, so the last test
 * can scan everything that was written anywhere for the passwords and the admin URL.
 */

const LOG_EVERYTHING = [
  '-c',
  'log_statement=all',
  '-c',
  'log_min_duration_statement=0',
  '-c',
  'log_parameter_max_length=-1',
  '-c',
  'log_parameter_max_length_on_error=-1',
  '-c',
  'log_min_error_statement=info',
];

let cluster: Cluster;
let keys: Keys;
clusterSuite({ postgresFlags: LOG_EVERYTHING }, (s) => {
  ({ cluster, keys } = s);
});

let target: Cluster;
let corner: TargetCorner;
beforeAll(async () => {
  target = await startCluster({ postgresFlags: LOG_EVERYTHING });
  corner = await targetCorner(target.ownerUrl);
});
afterAll(async () => {
  // A test that failed half-way leaves its API running: stop it before the clusters go.
  for (const api of running) await api.stop();
  await target?.destroy();
});

// The lease-expiry job looks every 200 ms; a crashed replica's claims lapse after 5 s.
const ENV = {
  COFFER_DYNAMIC_ALLOW_PRIVATE: 'true',
  COFFER_SCHEDULER_INTERVAL_MS: '200',
  COFFER_LEASE_CLAIM_SECONDS: '5',
  LOG_LEVEL: 'debug',
};

const running: Api[] = [];
/** Everything the API processes of this file wrote. */
const apiOutput: string[] = [];
const errorBodies: string[] = [];
const passwords: string[] = [];

async function started(env: Record<string, string> = {}): Promise<Api> {
  const api = await startApi(cluster.ownerUrl, keys, { ...ENV, ...env });
  running.push(api);
  void api.exited.then(() => apiOutput.push(api.output()));
  return api;
}

async function send(api: Api, method: string, path: string, tok: string, body?: unknown) {
  const r = await call(api.base, method, path, { token: tok, ...(body !== undefined ? { body } : {}) });
  if (r.status >= 400) errorBodies.push(JSON.stringify(r.body));
  return r;
}

/** A tenant with a backend on the target and a service that may lease from it. */
async function setUp(api: Api, revocationStatements: string[]) {
  const t = await tenantOn(api, keys);
  const name = `db-${randomBytes(3).toString('hex')}`;
  expect(
    (await send(api, 'PUT', '/v1/secrets/shared/dynamic/ADMIN_URL', t.adminToken, { value: corner.adminUrl })).status,
  ).toBeLessThan(300);
  const made = await send(api, 'POST', '/v1/dynamic/postgres', t.adminToken, {
    name,
    connectionSecret: 'shared/dynamic/ADMIN_URL',
    creationStatements: READ_ITEMS.creationStatements,
    revocationStatements,
    defaultTtlSeconds: 600,
    maxTtlSeconds: 3600,
  });
  expect(made.status, JSON.stringify(made.body)).toBe(201);
  const svc = await send(api, 'POST', '/v1/identities', t.adminToken, {
    name: `svc-${name}`,
    role: 'service',
    policies: [{ path: `dynamic/${name}`, capabilities: ['read'] }],
  });
  const created = svc.body as { identity: { clientId: string }; clientSecret: string };
  return {
    ...t,
    name,
    service: created,
    serviceToken: await token(api.base, created.identity.clientId, created.clientSecret),
  };
}

async function lease(api: Api, tok: string, backend: string) {
  const r = await send(api, 'POST', `/v1/dynamic/${backend}/leases`, tok, { ttlSeconds: 600 });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  const l = r.body as { leaseId: string; username: string; password: string };
  passwords.push(l.password);
  return l;
}

async function waitUntil(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await sleep(200);
  }
  return false;
}

const states = (tenantId: string) =>
  cluster.query<{ state: string; n: number }>(
    'select state, count(*)::int as n from coffer.leases where tenant_id = $1 group by state order by state',
    [tenantId],
  );

describe('dynamic credentials under faults', () => {
  it('the API killed at random points while it revokes expired leases: each lease ends revoked exactly once', async () => {
    let api = await started({ COFFER_SCHEDULER_ENABLED: 'false' });
    // Each revocation takes a while in the target, so that the kills land in the middle of the work.
    const w = await setUp(api, [...READ_ITEMS.revocationStatements, 'SELECT pg_sleep(0.1)']);
    const leases = [];
    for (let i = 0; i < 40; i++) leases.push(await lease(api, w.serviceToken, w.name));
    await api.stop();
    await cluster.query(`update coffer.leases set expires_at = now() - interval '1 second' where tenant_id = $1`, [
      w.tenantId,
    ]);

    let kills = 0;
    const revokedAtKill: number[] = [];
    for (let round = 0; round < 3; round++) {
      // A replica claims one batch (20) at a time: the first kill lands in the first batch, the second in the other
      // (the first's claims are still held). Before the third, the killed replicas' claims lapse
      // (COFFER_LEASE_CLAIM_SECONDS), so that it is killed while taking their work over.
      const [claims] = await cluster.query<{ ms: number }>(
        `select coalesce(extract(epoch from max(next_attempt_at) - now()) * 1000, 0)::int as ms
         from coffer.leases where tenant_id = $1 and state = 'revoking' and claim_token is not null`,
        [w.tenantId],
      );
      api = await started();
      await sleep((round === 2 ? Math.max(0, claims?.ms ?? 0) : 0) + 300 + Math.floor(Math.random() * 700));
      api.kill('SIGKILL');
      kills++;
      await api.exited;
      const done = await corner.query<{ n: number }>('select count(*)::int as n from revocations');
      revokedAtKill.push(done[0]?.n ?? 0);
    }
    api = await started();
    const finished = await waitUntil(async () => {
      const s = await states(w.tenantId);
      return s.length === 1 && s[0]?.state === 'revoked';
    }, 40_000);
    expect(finished, JSON.stringify(await states(w.tenantId))).toBe(true);
    await api.stop();

    const events = await cluster.query<{ lease: string; n: number }>(
      `select details->>'leaseId' as lease, count(*)::int as n from coffer.audit_events
       where tenant_id = $1 and action = 'leases.revoke' and outcome = 'allowed' group by 1`,
      [w.tenantId],
    );
    const logged = await corner.query<{ role: string; n: number }>(
      'select role, count(*)::int as n from revocations group by role',
    );
    const byRole = new Map(logged.map((r) => [r.role, r.n]));
    const byLease = new Map(events.map((e) => [e.lease, e.n]));
    for (const l of leases) {
      expect(byLease.get(l.leaseId), l.leaseId).toBe(1);
      expect(byRole.get(l.username), l.username).toBe(1);
      expect(await corner.roleExists(l.username)).toBe(false);
    }
    // The kills did interrupt the work.
    expect(revokedAtKill[0]).toBeLessThan(leases.length);
    expect(revokedAtKill[1]).toBeLessThan(leases.length);
    recordOutcome('crash-during-lease-revocation', {
      kills,
      leases: leases.length,
      revokedAtEachKill: revokedAtKill.join(', '),
      revokedExactlyOnce: [...byLease.values()].filter((n) => n === 1).length,
      doubled: [...byRole.values()].filter((n) => n > 1).length,
      lost: leases.length - byLease.size,
    });
  });

  it('the target database stopped while a lease expires: retried with backoff, revoked once it is back', async () => {
    const api = await started();
    const w = await setUp(api, READ_ITEMS.revocationStatements);
    const l = await lease(api, w.serviceToken, w.name);
    const url = corner.loginUrl(l.username, l.password);
    expect(await asLease(url, 'select count(*)::int as n from items')).toEqual({ rows: [{ n: 2 }] });
    await target.stop();
    let retrying = false;
    try {
      await cluster.query(`update coffer.leases set expires_at = now() - interval '1 second' where id = $1`, [
        l.leaseId,
      ]);
      // The first attempt failed and was settled: waiting out its backoff.
      retrying = await waitUntil(async () => {
        const [row] = await cluster.query<{ state: string; claim_token: string | null; last_error: string | null }>(
          'select state, claim_token, last_error from coffer.leases where id = $1',
          [l.leaseId],
        );
        return row?.state === 'revoking' && row.claim_token === null && row.last_error !== null;
      }, 10_000);
    } finally {
      if (!retrying) await target.start();
    }
    expect(retrying).toBe(true);
    const [failed] = await cluster.query<{ last_error: string; wait: number }>(
      `select last_error, extract(epoch from next_attempt_at - now())::float8 as wait from coffer.leases where id = $1`,
      [l.leaseId],
    );
    expect(failed?.last_error).toMatch(/unavailable|did not answer/);
    expect(failed?.wait).toBeGreaterThan(1);

    await target.start();
    const revoked = await waitUntil(async () => {
      const [row] = await cluster.query<{ state: string }>('select state from coffer.leases where id = $1', [
        l.leaseId,
      ]);
      return row?.state === 'revoked';
    }, 30_000);
    expect(revoked).toBe(true);
    expect(await corner.roleExists(l.username)).toBe(false);
    const [attempts] = await cluster.query<{ revoke_attempts: number }>(
      'select revoke_attempts from coffer.leases where id = $1',
      [l.leaseId],
    );
    await api.stop();
    recordOutcome('target-down-during-lease-expiry', {
      attemptsUntilRevoked: attempts?.revoke_attempts ?? 0,
      revoked: true,
    });
  });

  it('leak scan: no lease password, admin URL or admin password in any application log, server log, error or audit row', async () => {
    const api = await started();
    const w = await setUp(api, READ_ITEMS.revocationStatements);
    const l = await lease(api, w.serviceToken, w.name);
    await send(api, 'POST', `/v1/leases/${l.leaseId}/renew`, w.serviceToken, { ttlSeconds: 1200 });
    await send(api, 'GET', '/v1/leases', w.adminToken);
    await send(api, 'GET', `/v1/dynamic/postgres/${w.name}`, w.adminToken);
    // Failures, each with its error body: creation statements that fail in the target (one of them a syntax error,
    // whose statement the target logs), and a lease asked of a backend whose database is down.
    for (const [name, statement] of [
      ['no-such-role', 'CREATE ROLE {{name}} LOGIN PASSWORD {{password}} IN ROLE no_such_role'],
      ['syntax', 'CREATE ROLE {{name}} LOGIN PASSWORD {{password}} NONSENSE'],
    ] as const) {
      const secret = `shared/dynamic/${name.toUpperCase().replace(/-/g, '_')}_URL`;
      await send(api, 'PUT', `/v1/secrets/${secret}`, w.adminToken, { value: corner.adminUrl });
      const made = await send(api, 'POST', '/v1/dynamic/postgres', w.adminToken, {
        name,
        connectionSecret: secret,
        creationStatements: [statement],
        revocationStatements: [],
        defaultTtlSeconds: 60,
        maxTtlSeconds: 60,
      });
      expect(made.status).toBe(201);
      expect((await send(api, 'POST', `/v1/dynamic/${name}/leases`, w.adminToken)).status).toBe(422);
    }
    // The syntax backend's database goes away: its secret now names a port nothing listens on.
    const down = new URL(corner.adminUrl);
    down.port = '1';
    await send(api, 'PUT', '/v1/secrets/shared/dynamic/SYNTAX_URL', w.adminToken, { value: down.toString() });
    expect((await send(api, 'POST', '/v1/dynamic/syntax/leases', w.adminToken)).status).toBe(503);
    await send(api, 'DELETE', `/v1/leases/${l.leaseId}`, w.serviceToken);
    await send(api, 'GET', '/v1/audit/export', w.adminToken);
    await sleep(300);
    await api.stop();

    const admin = new URL(corner.adminUrl);
    const needles: Record<string, string> = {
      'admin URL': corner.adminUrl,
      'admin password': corner.adminPassword,
      'admin password, as the URL spells it': admin.password,
      'the URL that names a database that is down': down.toString(),
      ...Object.fromEntries(passwords.map((p, i) => [`lease password ${i + 1}`, p])),
    };
    const places: Record<string, string> = {
      'application log': apiOutput.join('\n'),
      "Coffer's PostgreSQL log": cluster.logs.join('\n'),
      "the target's PostgreSQL log": target.logs.join('\n'),
      'error bodies': errorBodies.join('\n'),
      'audit rows': JSON.stringify(await cluster.query('select * from coffer.audit_events')),
      'lease rows': JSON.stringify(await cluster.query('select * from coffer.leases')),
      'webhook payloads': JSON.stringify(await cluster.query('select payload from coffer.webhook_deliveries')),
    };
    const leaks: string[] = [];
    for (const [place, text] of Object.entries(places)) {
      for (const [what, needle] of Object.entries(needles))
        if (text.includes(needle)) leaks.push(`${what} in ${place}`);
    }
    expect(leaks).toEqual([]);
    // The scan sees what it should: the target logged the role's creation (with the verifier, not the password).
    expect(places["the target's PostgreSQL log"]).toContain(
      `CREATE ROLE "${l.username}" LOGIN PASSWORD 'SCRAM-SHA-256$`,
    );
    expect(passwords.length).toBeGreaterThan(0);
    recordOutcome('dynamic-credentials-leak-scan', {
      placesScanned: Object.keys(places).length,
      secretsScanned: Object.keys(needles).length,
      leaks: leaks.length,
    });
  });
});
