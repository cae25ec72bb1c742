import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../support/server-process.ts';
import { call, type Keys, makeKeys, startApi, tenantOn, token } from './harness.ts';
import { recordOutcome } from './results.ts';

/**
 * The drill runs on the machine's own PostgreSQL binaries (Debian's postgresql package), because pg_dump must be
 * at least as new as the server it dumps and the embedded PostgreSQL ships no pg_dump. Skipped, saying why, where
 * they are missing.
 */
const BIN = process.env.COFFER_PG_BIN ?? '/usr/lib/postgresql/15/bin';
const tools = ['initdb', 'pg_ctl', 'pg_dump', 'pg_restore', 'createdb'].map((t) => path.join(BIN, t));
const available = tools.every((t) => existsSync(t));
const asRoot = process.getuid?.() === 0;
const pgUser = (() => {
  if (!asRoot) return null;
  const r = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  return r.status === 0
    ? {
        uid: Number(r.stdout.trim()),
        gid: Number(spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout.trim()),
      }
    : null;
})();
const runnable = available && (!asRoot || pgUser !== null);

function run(tool: string, args: string[]): string {
  const full = path.join(BIN, tool);
  return asRoot
    ? execFileSync('runuser', ['-u', 'postgres', '--', full, ...args], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      })
    : execFileSync(full, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

let dir: string;
let port: number;
const url = (db: string) => `postgres://postgres@127.0.0.1:${port}/${db}`;

beforeAll(async () => {
  if (!runnable) return;
  dir = mkdtempSync(path.join(os.tmpdir(), 'coffer-drill-'));
  chmodSync(dir, 0o755);
  const data = path.join(dir, 'data');
  mkdirSync(data);
  if (pgUser) chownSync(data, pgUser.uid, pgUser.gid);
  port = await freePort();
  run('initdb', ['-D', data, '-U', 'postgres', '-A', 'trust', '--encoding=UTF8']);
  run('pg_ctl', [
    '-D',
    data,
    '-w',
    '-l',
    path.join(data, 'log'),
    '-o',
    `-p ${port} -k ${data} -c listen_addresses=127.0.0.1`,
    'start',
  ]);
  run('createdb', ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', 'coffer_live']);
});
afterAll(() => {
  if (!runnable || !dir) return;
  try {
    run('pg_ctl', ['-D', path.join(dir, 'data'), '-m', 'fast', '-w', 'stop']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

describe.skipIf(!runnable)(`backup and restore drill (PostgreSQL tools in ${BIN})`, () => {
  it('pg_dump, restore into a new database, start with the same keyring: every secret reads back and the chain verifies', async () => {
    const keys: Keys = makeKeys();
    const live = await startApi(url('coffer_live'), keys);
    const t = await tenantOn(live, keys);
    const values: Record<string, string> = {};
    for (let i = 0; i < 30; i++) values[`K_${i}`] = `value-${i}-${Math.random().toString(36).slice(2)}`;
    const set = Object.fromEntries(Object.entries(values).map(([k, v]) => [k, { value: v }]));
    expect(
      (await call(live.base, 'POST', '/v1/bundles/sandbox/drill', { token: t.adminToken, body: { set } })).status,
    ).toBe(200);
    await call(live.base, 'POST', '/v1/secrets/sandbox/drill/K_0/rotate', {
      token: t.adminToken,
      body: { value: 'rotated' },
    });
    values.K_0 = 'rotated';
    await call(live.base, 'POST', '/v1/keys/rotate', { token: t.adminToken });
    await live.stop();

    const dumps = path.join(dir, 'dumps');
    mkdirSync(dumps);
    if (pgUser) chownSync(dumps, pgUser.uid, pgUser.gid);
    const dump = path.join(dumps, 'coffer.dump');
    run('pg_dump', ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-Fc', '-f', dump, 'coffer_live']);
    run('createdb', ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', 'coffer_restored']);
    run('pg_restore', [
      '-h',
      '127.0.0.1',
      '-p',
      String(port),
      '-U',
      'postgres',
      '-d',
      'coffer_restored',
      '--exit-on-error',
      dump,
    ]);

    const restored = await startApi(url('coffer_restored'), keys);
    const adminToken = await token(restored.base, t.admin.clientId, t.admin.clientSecret);
    const bundle = await call(restored.base, 'GET', '/v1/bundles/sandbox/drill', { token: adminToken });
    expect((bundle.body as { values: Record<string, string> }).values).toEqual(values);
    const verify = await call(restored.base, 'GET', '/v1/audit/verify', { token: adminToken });
    expect(verify.body).toMatchObject({ ok: true });
    await restored.stop();

    // The same backup with a keyring that lacks the key, or has other key material under its id: not ready, and
    // /readyz names the key id.
    const notReady = async (masterKeys: string) => {
      const blind = await startApi(url('coffer_restored'), { ...keys, masterKeys }, {}, { waitReady: false });
      let ready: { status: number; body: unknown } = { status: 0, body: null };
      for (let i = 0; i < 100 && ready.status !== 503; i++) {
        ready = await call(blind.base, 'GET', '/readyz');
        await new Promise((r) => setTimeout(r, 100));
      }
      await blind.stop();
      return ready;
    };
    const missing = await notReady(`other1:${randomBytes(32).toString('base64')}`);
    expect(missing.status).toBe(503);
    expect(JSON.stringify(missing.body)).toContain('missing from the keyring: rel1');
    const wrong = await notReady(`rel1:${randomBytes(32).toString('base64')}`);
    expect(wrong.status).toBe(503);
    expect(JSON.stringify(wrong.body)).toContain('master key rel1 in the keyring cannot unwrap');
    recordOutcome('backup-restore-drill', {
      secrets: Object.keys(values).length,
      readBack: Object.keys(values).length,
      chainVerifies: true,
      missingKeyNamedByReadyz: true,
    });
  });
});
