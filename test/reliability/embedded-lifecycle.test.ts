import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { apiEntry, repoRoot } from '../support/build.ts';
import { freePort } from '../support/server-process.ts';
import { type Api, call, type Keys, makeKeys, sleep, tenantOn, waitReady } from './harness.ts';

/**
 * `npm start` with no DATABASE_URL, as a newcomer runs it: the server starts its own embedded PostgreSQL in the
 * data folder. These cases follow what a user does beside it, and how it ends.
 */

interface Started extends Api {
  dataDir: string;
  pgPort: number;
}

const dirs: string[] = [];
const children: ChildProcess[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) {
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  }
  // A SIGKILLed server leaves its PostgreSQL behind: stop it here rather than on the next test's data folder.
  for (const d of dirs) for (const pid of postgresOn(d)) process.kill(pid, 'SIGKILL');
});
afterAll(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function newDataDir(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'coffer-life-'));
  dirs.push(d);
  return d;
}

/** Every live (not zombie) process whose command line names this data folder: the postmaster and its children. */
function postgresOn(dataDir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      const state = readFileSync(`/proc/${entry}/stat`, 'utf8').split(') ')[1]?.[0];
      if (cmd.includes('postgres') && cmd.includes(dataDir) && state !== 'Z') pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

function isRunning(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z';
  } catch {
    return false;
  }
}

function serverEnv(keys: Keys, dataDir: string, pgPort: number, port: number): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    NODE_ENV: 'development',
    HOST: '127.0.0.1',
    PORT: String(port),
    LOG_LEVEL: 'info',
    COFFER_DATA_DIR: dataDir,
    COFFER_EMBEDDED_PG_PORT: String(pgPort),
    COFFER_MASTER_KEYS: keys.masterKeys,
    COFFER_JWT_PRIVATE_KEY: keys.jwtPrivateKey,
    COFFER_BOOTSTRAP_SECRET: keys.rootSecret,
  };
}

/** `npm start`'s process: the built server, in its own process group as a shell's job is. */
function spawnServer(
  keys: Keys,
  dataDir: string,
  pgPort: number,
  port: number,
): Started & { exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }> } {
  const child = spawn(process.execPath, [apiEntry], {
    env: serverEnv(keys, dataDir, pgPort, port),
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  children.push(child);
  let out = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  child.stderr.on('data', (d) => {
    out += d;
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return {
    base: `http://127.0.0.1:${port}`,
    child,
    output: () => out,
    exited: exit.then((e) => e.code),
    exit,
    kill: (signal) => void child.kill(signal),
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return (await exit).code;
    },
    dataDir,
    pgPort,
  };
}

async function startServer(keys: Keys, dataDir = newDataDir()) {
  const server = spawnServer(keys, dataDir, await freePort(), await freePort());
  await waitReady(server, 60_000);
  return server;
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([p, sleep(ms).then(() => Promise.reject(new Error(`${what}: not within ${ms} ms`)))]);
}

function run(command: string, args: string[], env: Record<string, string>) {
  const child = spawn(command, args, { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  child.stderr.on('data', (d) => {
    out += d;
  });
  return new Promise<{ code: number | null; out: string }>((resolve) =>
    child.once('exit', (code) => resolve({ code, out })),
  );
}

describe('beside a running `npm start`', () => {
  it('`npm run db:migrate` and a second `npm start` leave its database running: it keeps answering 200', async () => {
    const keys = makeKeys();
    const first = await startServer(keys);
    const { adminToken } = await tenantOn(first, keys);
    expect(
      (await call(first.base, 'PUT', '/v1/secrets/sandbox/life/K', { token: adminToken, body: { value: 'v1' } }))
        .status,
    ).toBe(201);
    const read = () => call(first.base, 'GET', '/v1/secrets/sandbox/life/K', { token: adminToken });

    // The README's `npm run db:migrate`, on the same data folder: it migrates through the running database.
    const migrate = await run('npm', ['run', 'db:migrate'], {
      ...serverEnv(keys, first.dataDir, first.pgPort, 1),
      HOME: os.homedir(),
    });
    expect(migrate.code, migrate.out).toBe(0);
    expect((await read()).status).toBe(200);
    expect((await call(first.base, 'GET', '/readyz')).status).toBe(200);
    expect(migrate.out).toContain('through the running embedded PostgreSQL');

    // A second start on the same folder refuses, naming the process that holds it, and stops nothing.
    const second = spawnServer(keys, first.dataDir, first.pgPort, await freePort());
    const { code } = await within(second.exit, 30_000, 'the second start did not exit');
    expect(code).not.toBe(0);
    expect(second.output()).toContain(`in use by process ${first.child.pid}`);
    expect((await read()).status).toBe(200);
    expect((await call(first.base, 'GET', '/readyz')).status).toBe(200);

    expect(await within(first.stop(), 15_000, 'SIGTERM')).toBe(0);
    expect(postgresOn(first.dataDir)).toEqual([]);
  }, 120_000);

  it('a database superuser reading /proc/<postmaster pid>/environ finds no COFFER_* variable and no key', async () => {
    const keys = makeKeys();
    const server = await startServer(keys);
    const lock = readFileSync(path.join(server.dataDir, 'postgres/pgdata/postmaster.pid'), 'utf8');
    const postmaster = Number(lock.split('\n')[0]);
    const environ = readFileSync(`/proc/${postmaster}/environ`, 'utf8');
    const names = environ
      .split('\0')
      .filter(Boolean)
      .map((kv) => kv.slice(0, kv.indexOf('=')));
    expect(names.length).toBeGreaterThan(0);
    expect(names.filter((n) => n.startsWith('COFFER_'))).toEqual([]);
    const masterKey = keys.masterKeys.split(':')[1] as string;
    expect(environ).not.toContain(masterKey);
    expect(environ).not.toContain('PRIVATE KEY');
    expect(environ).not.toContain(keys.rootSecret);
    await server.stop();
  }, 90_000);
});

describe('a failed start exits non-zero, at once, saying why', () => {
  it('a taken HTTP port: exit status 1, the message names the port, no PostgreSQL left behind', async () => {
    const taken = net.createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    const port = (taken.address() as net.AddressInfo).port;
    try {
      const dataDir = newDataDir();
      const server = spawnServer(makeKeys(), dataDir, await freePort(), port);
      const { code } = await within(server.exit, 60_000, 'the start did not exit');
      expect(code).toBe(1);
      expect(server.output()).toContain(`EADDRINUSE`);
      expect(server.output()).toContain(`:${port}`);
      expect(postgresOn(dataDir)).toEqual([]);
    } finally {
      taken.close();
    }
  }, 90_000);

  it('a taken embedded PostgreSQL port: exit status 1 without waiting, the message names the port', async () => {
    const taken = net.createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    const pgPort = (taken.address() as net.AddressInfo).port;
    try {
      const dataDir = newDataDir();
      const server = spawnServer(makeKeys(), dataDir, pgPort, await freePort());
      const { code } = await within(server.exit, 60_000, 'the start did not exit');
      expect(code).toBe(1);
      expect(server.output()).toContain(`did not start on port ${pgPort}`);
      // From the moment PostgreSQL gave up, the process is gone promptly (it used to hang about 12 s first).
      expect(server.output()).toContain('could not create any TCP/IP sockets');
      expect(postgresOn(dataDir)).toEqual([]);
    } finally {
      taken.close();
    }
  }, 90_000);
});

describe('every signal ends the process promptly, and its PostgreSQL with it', () => {
  it('SIGHUP when the terminal closes: the server exits within 10 s (it used to spin forever), no postgres left', async () => {
    const keys = makeKeys();
    const dataDir = newDataDir();
    const port = await freePort();
    const env = serverEnv(keys, dataDir, await freePort(), port);
    const command = `exec ${JSON.stringify(process.execPath)} ${JSON.stringify(apiEntry)}`;
    // `script` gives the server a real terminal; killing `script` closes it, and the kernel sends SIGHUP.
    const terminal = spawn('script', ['-qfec', command, '/dev/null'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    children.push(terminal);
    terminal.stdout.resume();
    const api: Api = {
      base: `http://127.0.0.1:${port}`,
      child: terminal,
      output: () => '',
      exited: new Promise((r) => terminal.once('exit', r)),
      kill: () => undefined,
      stop: async () => null,
    };
    await waitReady(api, 60_000);
    const serverPid = Number(
      readFileSync(`/proc/${terminal.pid}/task/${terminal.pid}/children`, 'utf8').trim().split(' ')[0],
    );
    expect(isRunning(serverPid)).toBe(true);
    expect(postgresOn(dataDir).length).toBeGreaterThan(0);

    terminal.kill('SIGKILL');
    const deadline = Date.now() + 10_000;
    while (isRunning(serverPid) && Date.now() < deadline) await sleep(100);
    const stillRunning = isRunning(serverPid);
    if (stillRunning) process.kill(serverPid, 'SIGKILL');
    expect(stillRunning).toBe(false);
    expect(postgresOn(dataDir)).toEqual([]);
  }, 90_000);

  it('Ctrl-C (SIGINT to the whole process group): exits 0 promptly, no warning of lost connections, no postgres', async () => {
    const server = await startServer(makeKeys());
    const before = server.output().length;
    // A terminal's Ctrl-C signals every process of the foreground job, not only the server.
    process.kill(-(server.child.pid as number), 'SIGINT');
    const { code } = await within(server.exit, 15_000, 'SIGINT');
    expect(code).toBe(0);
    const shutdown = server.output().slice(before);
    expect(shutdown).toContain('"msg":"stopped"');
    expect(shutdown).not.toMatch(/"level":(40|50|60)/);
    expect(shutdown).not.toContain('connection lost');
    expect(postgresOn(server.dataDir)).toEqual([]);
  }, 90_000);
});
