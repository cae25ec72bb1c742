import { type ChildProcess, spawn } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll } from 'vitest';
import { startEmbeddedPostgres } from '../../apps/api/src/db/embedded.ts';
import { apiEntry } from '../support/build.ts';
import { freePort } from '../support/server-process.ts';

/** One PostgreSQL cluster a test owns: it may stop, start, lock and tamper with it at will. */
export interface Cluster {
  ownerUrl: string;
  port: number;
  logs: string[];
  stop(): Promise<void>;
  start(): Promise<void>;
  query<T extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, params?: unknown[]): Promise<T[]>;
  destroy(): Promise<void>;
}

export async function startCluster(o: { postgresFlags?: string[] } = {}): Promise<Cluster> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'coffer-rel-pg-'));
  const port = await freePort();
  const logs: string[] = [];
  const boot = () =>
    startEmbeddedPostgres({
      dir,
      port,
      onLog: (l) => void logs.push(l),
      ...(o.postgresFlags ? { postgresFlags: o.postgresFlags } : {}),
    });
  let handle: Awaited<ReturnType<typeof startEmbeddedPostgres>> | null = await boot();
  const ownerUrl = handle.url;
  return {
    ownerUrl,
    port,
    logs,
    async stop() {
      await handle?.stop();
      handle = null;
    },
    async start() {
      handle = await boot();
    },
    async query<T extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<T[]> {
      const c = new pg.Client({ connectionString: ownerUrl });
      await c.connect();
      try {
        return (await c.query<T>(sql, params)).rows;
      } finally {
        await c.end();
      }
    },
    async destroy() {
      await handle?.stop().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface Keys {
  masterKeys: string;
  jwtPrivateKey: string;
  rootSecret: string;
}

export function makeKeys(): Keys {
  return {
    masterKeys: `rel1:${randomBytes(32).toString('base64')}`,
    jwtPrivateKey: generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    rootSecret: `rel-root-${randomBytes(18).toString('base64url')}`,
  };
}

/** A running API process. */
export interface Api {
  base: string;
  child: ChildProcess;
  output(): string;
  exited: Promise<number | null>;
  kill(signal: NodeJS.Signals): void;
  stop(): Promise<number | null>;
}

export async function startApi(
  databaseUrl: string,
  keys: Keys,
  env: Record<string, string> = {},
  o: { port?: number; waitReady?: boolean } = {},
): Promise<Api> {
  const port = o.port ?? (await freePort());
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'coffer-rel-api-'));
  const child = spawn(process.execPath, [apiEntry], {
    env: {
      PATH: process.env.PATH ?? '',
      NODE_ENV: 'production',
      HOST: '127.0.0.1',
      PORT: String(port),
      LOG_LEVEL: 'info',
      DATABASE_URL: databaseUrl,
      COFFER_MASTER_KEYS: keys.masterKeys,
      COFFER_JWT_PRIVATE_KEY: keys.jwtPrivateKey,
      COFFER_BOOTSTRAP_SECRET: keys.rootSecret,
      COFFER_DATA_DIR: dataDir,
      COFFER_RATE_LIMIT_PER_SECOND: '100000',
      COFFER_LOGIN_RATE_LIMIT_PER_MINUTE: '100000',
      COFFER_DB_ACQUIRE_TIMEOUT_MS: '2000',
      COFFER_DB_LOCK_TIMEOUT_MS: '2000',
      COFFER_DB_STATEMENT_TIMEOUT_MS: '5000',
      COFFER_SHUTDOWN_TIMEOUT_MS: '10000',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (d) => {
    out += d;
  });
  child.stderr?.on('data', (d) => {
    out += d;
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  void exited.then(() => rmSync(dataDir, { recursive: true, force: true }));
  const api: Api = {
    base: `http://127.0.0.1:${port}`,
    child,
    output: () => out,
    exited,
    kill: (signal) => {
      child.kill(signal);
    },
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
  if (o.waitReady !== false) await waitReady(api, 30_000);
  return api;
}

export async function waitReady(api: Api, timeoutMs: number): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (api.child.exitCode !== null)
      throw new Error(`the API exited (${api.child.exitCode}):\n${api.output().slice(-3000)}`);
    try {
      const res = await fetch(`${api.base}/readyz`, { signal: AbortSignal.timeout(2000) });
      if (res.ok) return Date.now() - started;
    } catch {
      // not yet
    }
    if (Date.now() - started > timeoutMs)
      throw new Error(`not ready after ${timeoutMs} ms:\n${api.output().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface Reply {
  status: number;
  body: unknown;
  headers: Headers;
  ms: number;
}

/** One HTTP call; a network failure is status 0 (so load loops can count it rather than throw). */
export async function call(
  base: string,
  method: string,
  urlPath: string,
  o: { token?: string; body?: unknown; timeoutMs?: number; headers?: Record<string, string> } = {},
): Promise<Reply> {
  const started = performance.now();
  try {
    const res = await fetch(base + urlPath, {
      method,
      headers: {
        ...(o.token ? { authorization: `Bearer ${o.token}` } : {}),
        ...(o.body !== undefined ? { 'content-type': 'application/json' } : {}),
        ...o.headers,
      },
      ...(o.body !== undefined ? { body: JSON.stringify(o.body) } : {}),
      signal: AbortSignal.timeout(o.timeoutMs ?? 15_000),
    });
    const text = await res.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // not JSON
    }
    return { status: res.status, body, headers: res.headers, ms: performance.now() - started };
  } catch {
    return { status: 0, body: null, headers: new Headers(), ms: performance.now() - started };
  }
}

export async function token(base: string, clientId: string, clientSecret: string): Promise<string> {
  const r = await call(base, 'POST', '/v1/auth/token', { body: { clientId, clientSecret } });
  if (r.status !== 200) throw new Error(`login failed: ${r.status} ${JSON.stringify(r.body)}`);
  return (r.body as { accessToken: string }).accessToken;
}

/** A tenant with an admin token, made through the API as root. */
export async function tenantOn(api: Api, keys: Keys, slug = `rel-${randomBytes(4).toString('hex')}`) {
  const root = await token(api.base, 'root', keys.rootSecret);
  const r = await call(api.base, 'POST', '/v1/tenants', { token: root, body: { slug, name: slug } });
  if (r.status !== 201) throw new Error(`tenant creation failed: ${r.status} ${JSON.stringify(r.body)}`);
  const created = r.body as { tenant: { id: string }; admin: { clientId: string; clientSecret: string } };
  return {
    tenantId: created.tenant.id,
    admin: created.admin,
    adminToken: await token(api.base, created.admin.clientId, created.admin.clientSecret),
  };
}

/** Checks an error reply: the envelope with a stable code. */
export function isEnvelope(body: unknown): boolean {
  const e = (body as { error?: { code?: unknown; requestId?: unknown } } | null)?.error;
  return typeof e?.code === 'string' && typeof e.requestId === 'string';
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface ClusterSuite<N extends readonly Record<string, string>[]> {
  cluster: Cluster;
  keys: Keys;
  /** One running API per entry of `apis`, started with that entry's extra environment. */
  apis: { [K in keyof N]: Api };
}

/**
 * The setup every fault test shares: a PostgreSQL cluster of its own, fresh keys and the APIs it asks for, made
 * before the file's tests and torn down after them (APIs first, then the cluster). `set` hands them to the file's
 * own variables, as `ownerSuite()` does for the unit suites: `clusterSuite({ apis: [{}] }, (s) => ({ cluster, keys,
 * apis: [api] } = s));`.
 */
export function clusterSuite<const N extends readonly Record<string, string>[] = []>(
  o: { apis?: N; postgresFlags?: string[] },
  set: (s: ClusterSuite<N>) => void,
): void {
  let cluster: Cluster | undefined;
  const apis: Api[] = [];
  beforeAll(async () => {
    cluster = await startCluster(o.postgresFlags ? { postgresFlags: o.postgresFlags } : {});
    const keys = makeKeys();
    for (const env of o.apis ?? []) apis.push(await startApi(cluster.ownerUrl, keys, env));
    set({ cluster, keys, apis: apis as { [K in keyof N]: Api } });
  });
  afterAll(async () => {
    for (const api of apis) await api.stop();
    await cluster?.destroy();
  });
}
