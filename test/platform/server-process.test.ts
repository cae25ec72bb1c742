import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, unlinkSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { WhoAmI } from '@coffer/contracts';
import { afterEach, describe, expect, inject, it } from 'vitest';
import {
  loginOverHttp,
  loginWithAgent,
  type ScratchDatabase,
  type ServerProcess,
  scratchDatabase,
  startServerProcess,
} from '../support/server-process.ts';

// What each test started, so a failing test still leaves nothing running behind it.
const running: ServerProcess[] = [];
const databases: ScratchDatabase[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const p of running.splice(0)) await p.stop('SIGKILL').catch(() => undefined);
  for (const d of databases.splice(0)) await d.drop();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function freshSetup(): Promise<{ db: ScratchDatabase; dataDir: string }> {
  const db = await scratchDatabase();
  databases.push(db);
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'coffer-proc-'));
  dirs.push(dataDir);
  return { db, dataDir };
}

function serverEnv(db: ScratchDatabase, dataDir: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    NODE_ENV: 'development',
    LOG_LEVEL: 'info',
    DATABASE_URL: db.ownerUrl,
    // Always given: the process must not provision (and so re-password) the app role the other tests share.
    DATABASE_APP_URL: db.appUrl,
    COFFER_MASTER_KEYS: inject('masterKeys'),
    COFFER_JWT_PRIVATE_KEY: inject('jwtPrivateKeyPem'),
    COFFER_DATA_DIR: dataDir,
    ...extra,
  };
}

async function start(env: Record<string, string>): Promise<ServerProcess> {
  const p = await startServerProcess(env);
  running.push(p);
  return p;
}

async function whoami(url: string, token: string): Promise<WhoAmI> {
  const res = await fetch(`${url}/v1/auth/whoami`, { headers: { authorization: `Bearer ${token}` } });
  expect(res.status).toBe(200);
  return (await res.json()) as WhoAmI;
}

describe('the built server as a process', () => {
  it('first start writes the root credentials to a 0600 file, never to the output; a restart keeps them', async () => {
    const { db, dataDir } = await freshSetup();
    const server = await start(serverEnv(db, dataDir));
    const file = path.join(dataDir, 'bootstrap-credentials.json');

    expect(existsSync(file)).toBe(true);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const creds = JSON.parse(readFileSync(file, 'utf8')) as { clientId: string; clientSecret: string };
    expect(creds.clientId).toBe('root');
    expect(creds.clientSecret.length).toBeGreaterThanOrEqual(32);
    // The keys came from the environment: nothing was generated.
    expect(readdirSync(dataDir)).toEqual(['bootstrap-credentials.json']);

    const { status, token } = await loginOverHttp(server.url, 'root', creds.clientSecret);
    expect(status).toBe(200);
    expect(await whoami(server.url, token as string)).toMatchObject({ clientId: 'root', role: 'platform' });

    // One line says it listens, and what to do next.
    const listening = server
      .stdout()
      .split('\n')
      .filter((l) => /listening/i.test(l));
    expect(listening).toHaveLength(1);
    expect(listening[0]).toContain(`${server.url}/docs`);
    expect(listening[0]).toContain(`coffer login --url ${server.url}`);

    // The log says where the file is, never what is in it.
    expect(server.stdout()).toContain(file);
    expect(server.stdout() + server.stderr()).not.toContain(creds.clientSecret);

    expect(await server.stop('SIGTERM')).toBe(0);
    running.splice(running.indexOf(server), 1);
    expect(server.stdout() + server.stderr()).not.toContain(creds.clientSecret);

    // Restart on the same database: the root exists, so no new credentials are made.
    unlinkSync(file);
    const again = await start(serverEnv(db, dataDir));
    expect(existsSync(file)).toBe(false);
    expect((await loginOverHttp(again.url, 'root', creds.clientSecret)).status).toBe(200);
    expect(again.stdout()).not.toContain('created the platform admin');
    expect(again.stdout() + again.stderr()).not.toContain(creds.clientSecret);
    expect(await again.stop('SIGTERM')).toBe(0);
  }, 90_000);

  /**
   * Sends 16 logins at once (an scrypt each, on a pool of 4 threads: the server is busy for a while), sends
   * SIGTERM once the server has logged every one of them as incoming, and collects what happened.
   */
  async function sigtermDuringLogins(agent: http.Agent | false, extraEnv: Record<string, string> = {}) {
    const secret = `proc-${randomBytes(24).toString('base64url')}`;
    const { db, dataDir } = await freshSetup();
    const server = await start(serverEnv(db, dataDir, { COFFER_BOOTSTRAP_SECRET: secret, ...extraEnv }));
    const ids = Array.from({ length: 16 }, (_, i) => `drain-${i}-${randomBytes(4).toString('hex')}`);
    const seen = ids.map((id) =>
      server.waitForLine((l) => l.includes(`"requestId":"${id}"`) && l.includes('incoming request')),
    );
    const logins = ids.map((id) => loginWithAgent(server.url, 'root', secret, agent, id));
    await Promise.all(seen);
    const exit = server.stop('SIGTERM', 10_000);
    const statuses = await Promise.all(logins);
    const code = await exit.catch((err: Error) => err.message);
    const lines = server.stdout().split('\n');
    const shutdownAt = lines.findIndex((l) => l.includes('shutting down'));
    const completedAfterShutdown = lines
      .slice(Math.max(shutdownAt, 0))
      .filter((l) => l.includes('request completed') && ids.some((id) => l.includes(id))).length;
    return { ids, statuses, code, shutdownAt, completedAfterShutdown, server, secret };
  }

  it('SIGTERM lets in-flight requests finish, then exits 0 within 10 s', async () => {
    const r = await sigtermDuringLogins(false);
    expect(r.statuses).toEqual(r.ids.map(() => 200));
    expect(r.code).toBe(0);
    // The shutdown began while some of those requests were still being served.
    expect(r.shutdownAt).toBeGreaterThanOrEqual(0);
    expect(r.completedAfterShutdown).toBeGreaterThan(0);
    expect(r.server.stdout()).toContain('"msg":"stopped"');
    expect(r.server.stdout() + r.server.stderr()).not.toContain(r.secret);
  }, 60_000);

  // Regression test: this was a bug the first version of this suite found.
  it('SIGTERM with requests in flight on keep-alive connections still exits 0', async () => {
    const agent = new http.Agent({ keepAlive: true });
    try {
      const r = await sigtermDuringLogins(agent, { COFFER_SHUTDOWN_TIMEOUT_MS: '3000' });
      expect(r.statuses).toEqual(r.ids.map(() => 200));
      expect(r.completedAfterShutdown).toBeGreaterThan(0);
      expect(r.code).toBe(0);
      expect(r.server.stdout()).toContain('"msg":"stopped"');
    } finally {
      agent.destroy();
    }
  }, 60_000);

  it('with COFFER_BOOTSTRAP_SECRET on a fresh database, root logs in with it and no file is written', async () => {
    const secret = `boot-${randomBytes(24).toString('base64url')}`;
    const { db, dataDir } = await freshSetup();
    const server = await start(serverEnv(db, dataDir, { COFFER_BOOTSTRAP_SECRET: secret }));

    expect(existsSync(path.join(dataDir, 'bootstrap-credentials.json'))).toBe(false);
    const { status, token } = await loginOverHttp(server.url, 'root', secret);
    expect(status).toBe(200);
    expect((await whoami(server.url, token as string)).role).toBe('platform');
    expect((await loginOverHttp(server.url, 'root', `${secret}x`)).status).toBe(401);
    expect(server.stdout()).toContain('COFFER_BOOTSTRAP_SECRET');
    expect(server.stdout() + server.stderr()).not.toContain(secret);
    expect(await server.stop('SIGTERM')).toBe(0);
  }, 60_000);
});
