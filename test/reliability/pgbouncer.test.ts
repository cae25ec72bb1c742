import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runMigrations } from '../../apps/api/src/db/migrate.ts';
import { provisionAppRole } from '../../apps/api/src/db/roles.ts';
import { freePort } from '../support/server-process.ts';
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
} from './harness.ts';
import { recordOutcome } from './results.ts';

/**
 * Coffer through PgBouncer in transaction pooling, with two API replicas. PgBouncer comes from the system's
 * packages; the suite never installs anything (`.ci/run` does, so CI always runs this file). Without it the file is
 * skipped and says how to get it, unless COFFER_REQUIRE_PGBOUNCER=1 asks for it to be a failure.
 */
const install = 'apt-get install -y pgbouncer (as .ci/run does)';
function findPgbouncer(): string | null {
  for (const p of ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer', '/usr/local/bin/pgbouncer'])
    if (existsSync(p)) return p;
  return null;
}

const bin = findPgbouncer();
if (!bin && process.env.COFFER_REQUIRE_PGBOUNCER === '1')
  throw new Error(`COFFER_REQUIRE_PGBOUNCER=1 but PgBouncer is not installed: ${install}`);
/**
 * PgBouncer keeps protocol-level prepared statements across transaction pooling from 1.21 on (with
 * max_prepared_statements); before that Coffer must not name its statements (COFFER_DB_PREPARED_STATEMENTS=false).
 */
function tracksPreparedStatements(path: string): boolean {
  const m = /PgBouncer (\d+)\.(\d+)/.exec(execFileSync(path, ['--version'], { encoding: 'utf8' }));
  return m ? Number(m[1]) > 1 || Number(m[2]) >= 21 : false;
}
const prepared = bin ? tracksPreparedStatements(bin) : false;
const why = bin ? '' : ` (skipped: PgBouncer is not installed; ${install})`;

let cluster: Cluster;
let keys: Keys;
let dir: string;
let stopBouncer: (() => void) | undefined;
let replicas: Api[] = [];

beforeAll(async () => {
  if (!bin) return;
  cluster = await startCluster();
  keys = makeKeys();
  await runMigrations(cluster.ownerUrl);
  const password = randomBytes(18).toString('base64url');
  await provisionAppRole(cluster.ownerUrl, password);

  dir = mkdtempSync(path.join(os.tmpdir(), 'coffer-pgbouncer-'));
  chmodSync(dir, 0o755);
  const port = await freePort();
  writeFileSync(path.join(dir, 'userlist.txt'), `"coffer_app" "${password}"\n`, { mode: 0o600 });
  writeFileSync(
    path.join(dir, 'pgbouncer.ini'),
    [
      '[databases]',
      `coffer = host=127.0.0.1 port=${cluster.port} dbname=coffer`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      `unix_socket_dir = ${dir}`,
      'auth_type = scram-sha-256',
      `auth_file = ${path.join(dir, 'userlist.txt')}`,
      'pool_mode = transaction',
      'max_client_conn = 400',
      'default_pool_size = 6',
      // Startup parameters PgBouncer cannot pass on in transaction mode; the role's defaults hold them instead.
      'ignore_startup_parameters = extra_float_digits,statement_timeout,lock_timeout,idle_in_transaction_session_timeout',
      ...(prepared ? ['max_prepared_statements = 100'] : []),
      `logfile = ${path.join(dir, 'pgbouncer.log')}`,
      `pidfile = ${path.join(dir, 'pgbouncer.pid')}`,
      '',
    ].join('\n'),
  );
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    for (const f of ['', 'userlist.txt', 'pgbouncer.ini']) chownSync(path.join(dir, f), uid, gid);
  }
  const child = asRoot
    ? spawn('runuser', ['-u', 'postgres', '--', bin, path.join(dir, 'pgbouncer.ini')], { stdio: 'ignore' })
    : spawn(bin, [path.join(dir, 'pgbouncer.ini')], { stdio: 'ignore' });
  // Under runuser the signal must reach PgBouncer itself (its pidfile), or it outlives the test.
  const pidFile = path.join(dir, 'pgbouncer.pid');
  stopBouncer = () => {
    try {
      process.kill(Number(readFileSync(pidFile, 'utf8').trim()), 'SIGINT');
    } catch {
      // already gone
    }
    child.kill('SIGINT');
  };
  await sleep(500);

  const appUrl = `postgres://coffer_app:${encodeURIComponent(password)}@127.0.0.1:${port}/coffer`;
  for (let i = 0; i < 2; i++) {
    replicas.push(
      await startApi(cluster.ownerUrl, keys, {
        DATABASE_APP_URL: appUrl,
        COFFER_AUTO_MIGRATE: 'false',
        COFFER_DB_POOL_MAX: '10',
        COFFER_DB_PREPARED_STATEMENTS: String(prepared),
      }),
    );
  }
});

afterAll(async () => {
  for (const r of replicas) await r.stop();
  replicas = [];
  stopBouncer?.();
  await cluster?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!bin)(`through PgBouncer in transaction mode, two replicas${why}`, () => {
  it('serves the core paths through either replica and never shows one tenant another tenant’s data under load', async () => {
    const [r1, r2] = replicas as [Api, Api];
    const a = await tenantOn(r1, keys);
    const b = await tenantOn(r2, keys);
    // The same paths in both tenants, different values.
    for (const [t, tag] of [
      [a, 'A'],
      [b, 'B'],
    ] as const) {
      for (let i = 0; i < 5; i++) {
        expect(
          (
            await call(r1.base, 'PUT', `/v1/secrets/sandbox/app/K${i}`, {
              token: t.adminToken,
              body: { value: `${tag}-0` },
            })
          ).status,
        ).toBe(201);
      }
    }
    const counts = { writes: 0, reads: 0, wrong: 0, failed: 0 };
    const last = new Map<string, number>();
    // A fixed amount of work, not a fixed time: what is checked is that every request succeeds and stays in its
    // tenant, however slow the machine is.
    const ROUNDS = 10;
    const worker = async (w: number) => {
      const [t, tag] = w % 2 === 0 ? ([a, 'A'] as const) : ([b, 'B'] as const);
      for (let n = 1; n <= ROUNDS; n++) {
        const api = n % 2 === 0 ? r1 : r2;
        const k = `K${w % 5}`;
        const put = await call(api.base, 'PUT', `/v1/secrets/sandbox/app/${k}`, {
          token: t.adminToken,
          body: { value: `${tag}-${w}-${n}` },
        });
        if (put.status !== 200) counts.failed++;
        else counts.writes++;
        const other = n % 2 === 0 ? r2 : r1;
        const get = await call(other.base, 'GET', `/v1/secrets/sandbox/app/${k}`, { token: t.adminToken });
        counts.reads++;
        const value = (get.body as { value?: string }).value ?? '';
        if (get.status !== 200) counts.failed++;
        else if (!value.startsWith(`${tag}-`)) counts.wrong++;
        last.set(`${tag}/${k}`, n);
        const bundle = await call(api.base, 'GET', '/v1/bundles/sandbox/app', { token: t.adminToken });
        if (
          Object.values((bundle.body as { values: Record<string, string> }).values).some(
            (v) => !v.startsWith(`${tag}-`),
          )
        )
          counts.wrong++;
      }
    };
    await Promise.all(Array.from({ length: 8 }, (_, w) => worker(w)));
    expect(counts.wrong).toBe(0);
    expect(counts.failed).toBe(0);
    expect(counts.writes).toBe(8 * ROUNDS);

    // More of the suite's core paths, through the bouncer: identities, rotation, data-key rotation, audit.
    const svc = await call(r2.base, 'POST', '/v1/identities', {
      token: a.adminToken,
      body: { name: 'svc', role: 'service', policies: [{ path: 'sandbox/app/*', capabilities: ['read', 'rotate'] }] },
    });
    expect(svc.status).toBe(201);
    expect(
      (
        await call(r1.base, 'POST', '/v1/secrets/sandbox/app/K0/rotate', {
          token: a.adminToken,
          body: { value: 'A-rotated' },
        })
      ).status,
    ).toBe(200);
    expect((await call(r2.base, 'GET', '/v1/secrets/sandbox/app/K0', { token: a.adminToken })).body).toMatchObject({
      value: 'A-rotated',
    });
    expect((await call(r2.base, 'POST', '/v1/keys/rotate', { token: b.adminToken })).status).toBe(202);
    expect(
      (
        await call(r1.base, 'PUT', '/v1/secrets/sandbox/app/K1', {
          token: b.adminToken,
          body: { value: 'B-after-rekey' },
        })
      ).status,
    ).toBe(200);
    for (const t of [a, b]) {
      expect((await call(r1.base, 'GET', '/v1/audit/verify', { token: t.adminToken })).body).toMatchObject({
        ok: true,
      });
      const page = await call(r2.base, 'GET', '/v1/audit?limit=5', { token: t.adminToken });
      expect((page.body as { items: unknown[] }).items).toHaveLength(5);
    }
    // PgBouncer really was in the path: its log shows the app's clients.
    const log = readFileSync(path.join(dir, 'pgbouncer.log'), 'utf8');
    expect(log).toMatch(/coffer_app/);
    recordOutcome('pgbouncer-transaction-mode', {
      replicas: 2,
      writes: counts.writes,
      reads: counts.reads,
      crossTenantLeaks: counts.wrong,
      failures: counts.failed,
    });
  });
});
