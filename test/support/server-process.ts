import { type ChildProcessByStdio, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import type { Readable } from 'node:stream';
import { inject } from 'vitest';
import { apiEntry } from './build.ts';
import { withClient, withDatabase } from './db.ts';

/** A port nobody listens on right now (PORT=0 would not tell us which one the server took). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address();
      srv.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

export interface ScratchDatabase {
  name: string;
  ownerUrl: string;
  /** The shared app role, pointed at this database: the server must never provision (re-password) it. */
  appUrl: string;
  drop(): Promise<void>;
}

/** An empty database of its own on the test cluster, for a server process to migrate and bootstrap. */
export async function scratchDatabase(): Promise<ScratchDatabase> {
  const name = `coffer_proc_${randomBytes(6).toString('hex')}`;
  await withClient(inject('ownerDatabaseUrl'), (c) => c.query(`create database ${name}`));
  return {
    name,
    ownerUrl: withDatabase(inject('ownerDatabaseUrl'), name),
    appUrl: withDatabase(inject('appDatabaseUrl'), name),
    drop: async () => {
      await withClient(inject('ownerDatabaseUrl'), (c) => c.query(`drop database if exists ${name} with (force)`));
    },
  };
}

export interface ServerProcess {
  url: string;
  child: ChildProcessByStdio<null, Readable, Readable>;
  /** Everything the process wrote so far. */
  stdout(): string;
  stderr(): string;
  /** Resolves on the first stdout line that satisfies `match`. */
  waitForLine(match: (line: string) => boolean, timeoutMs?: number): Promise<string>;
  /** Sends `signal` and resolves with the exit code, or rejects after `timeoutMs`. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | null>;
  exited: Promise<number | null>;
}

/** Spawns the built server (`apps/api/dist/main.js`) with exactly `env` (plus PATH) and waits for /readyz 200. */
export async function startServerProcess(env: Record<string, string>, readyTimeoutMs = 30_000): Promise<ServerProcess> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(process.execPath, [apiEntry], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOST: '127.0.0.1', PORT: String(port), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const lineWaiters: { match: (l: string) => boolean; resolve: (l: string) => void }[] = [];
  let partial = '';
  child.stdout.on('data', (d: Buffer) => {
    const text = d.toString();
    out += text;
    const lines = (partial + text).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      for (const w of [...lineWaiters]) {
        if (w.match(line)) {
          lineWaiters.splice(lineWaiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  });
  child.stderr.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));

  const proc: ServerProcess = {
    url,
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitForLine(match, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no such line in time')), timeoutMs);
        lineWaiters.push({
          match,
          resolve: (l) => {
            clearTimeout(timer);
            resolve(l);
          },
        });
      });
    },
    async stop(signal = 'SIGTERM', timeoutMs = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill(signal);
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no exit within ${timeoutMs} ms of ${signal}`)), timeoutMs);
      });
      try {
        return await Promise.race([exited, timeout]);
      } finally {
        clearTimeout(timer);
      }
    },
  };

  const deadline = Date.now() + readyTimeoutMs;
  for (;;) {
    if (child.exitCode !== null) {
      throw new Error(`the server exited with ${child.exitCode} before it was ready:\n${err}\n${out}`);
    }
    try {
      const res = await fetch(`${url}/readyz`);
      if (res.status === 200) return proc;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`the server was not ready within ${readyTimeoutMs} ms:\n${err}\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Logs in over HTTP; returns the status and, on success, the token. */
export async function loginOverHttp(
  url: string,
  clientId: string,
  clientSecret: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; token: string | null }> {
  const res = await fetch(`${url}/v1/auth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ clientId, clientSecret }),
  });
  const body = (await res.json()) as { accessToken?: string };
  return { status: res.status, token: body.accessToken ?? null };
}

/**
 * A login over node:http with an explicit agent: `false` sends `Connection: close`, a keep-alive agent keeps the
 * connection open afterwards (as fetch, load balancers and the SDK do).
 */
export function loginWithAgent(
  url: string,
  clientId: string,
  clientSecret: string,
  agent: http.Agent | false,
  requestId: string,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${url}/v1/auth/token`,
      { method: 'POST', agent, headers: { 'content-type': 'application/json', 'x-request-id': requestId } },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify({ clientId, clientSecret }));
  });
}
