import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SessionList } from '@coffer/contracts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.ts';
import { bearer, createTenant, rootToken, type TestTenant } from '../support/factories.ts';
import { expectOk, sleep } from '../support/secrets.ts';
import { createTestApp, type TestApp } from '../support/test-app.ts';

/**
 * `coffer login` opens a session that commands renew by themselves, against a real server issuing one-second
 * tokens, with its secrets in a 0600 file or in the keychain (a stand-in `secret-tool` on PATH, since this machine
 * has none), and `coffer logout` ends it on the server.
 */

let t: TestApp;
let short: TestApp;
let url: string;
let root: string;
const dirs: string[] = [];

beforeAll(async () => {
  t = await createTestApp();
  short = await createTestApp({ COFFER_TOKEN_TTL_SECONDS: '1' });
  url = await short.app.listen({ host: '127.0.0.1', port: 0 });
  root = await rootToken(t.app);
});
afterAll(async () => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  await short?.close();
  await t?.close();
});

const tmp = (prefix: string) => {
  const d = mkdtempSync(path.join(os.tmpdir(), prefix));
  dirs.push(d);
  return d;
};
const ok = (r: { code: number | null; stderr: string }) => expect(r.code, r.stderr).toBe(0);
const PRINT_K = 'process.stdout.write(process.env.K ?? "unset")';

async function tenantWithSecret(): Promise<TestTenant> {
  const tenant = await createTenant(t.app, root);
  const res = await t.app.inject({
    method: 'PUT',
    url: '/v1/secrets/sandbox/sbx-s/K',
    headers: bearer(tenant.adminToken),
    payload: { value: 'the-value' },
  });
  expect(res.statusCode).toBe(201);
  return tenant;
}

const login = (tenant: TestTenant, env: Record<string, string>) =>
  runCli(['login', '--client-id', tenant.admin.clientId, '--client-secret-stdin'], {
    env,
    input: `${tenant.admin.clientSecret}\n`,
  });
const credentialsOf = (dir: string) =>
  JSON.parse(readFileSync(path.join(dir, 'credentials.json'), 'utf8')) as {
    expiresAt: number;
    accessToken: string;
    session?: { id: string; store: string; expiresAt: number };
  };
/** Makes the cached token look spent, so the next command renews it (as it would after 15 minutes). */
function expireCachedToken(dir: string): void {
  const file = path.join(dir, 'credentials.json');
  writeFileSync(file, JSON.stringify({ ...credentialsOf(dir), expiresAt: 0 }), { mode: 0o600 });
}
const run = (env: Record<string, string>) =>
  runCli(['run', '--bundle', 'sandbox/sbx-s', '--', process.execPath, '-e', PRINT_K], { env });
const sessionsOf = async (tenant: TestTenant) =>
  expectOk(await t.app.inject({ url: '/v1/sessions?all=true', headers: bearer(tenant.adminToken) }), 200, SessionList)
    .items;

/** A stand-in for libsecret's secret-tool: keeps each secret in a file per account, logs its arguments. */
function fakeSecretTool(): { bin: string; store: string; argvLog: string } {
  const bin = tmp('coffer-bin-');
  const store = tmp('coffer-keyring-');
  const argvLog = path.join(store, 'argv.log');
  const script = `#!/bin/sh
echo "$@" >> "${argvLog}"
cmd="$1"; shift
account=""
while [ $# -gt 0 ]; do
  if [ "$1" = "account" ]; then account="$2"; fi
  shift
done
case "$cmd" in
  store) cat > "${store}/$account" ;;
  lookup) [ -f "${store}/$account" ] && cat "${store}/$account" || exit 1 ;;
  clear) rm -f "${store}/$account" ;;
  *) exit 2 ;;
esac
`;
  writeFileSync(path.join(bin, 'secret-tool'), script, { mode: 0o755 });
  return { bin, store, argvLog };
}

describe('coffer login sessions', () => {
  it('opens a session that coffer run renews past the token’s lifetime, and coffer logout ends it on the server', async () => {
    const tenant = await tenantWithSecret();
    const dir = tmp('coffer-cfg-');
    const env = { COFFER_URL: url, COFFER_CONFIG_DIR: dir, COFFER_CREDENTIAL_STORE: 'file' };
    const r = await login(tenant, env);
    ok(r);
    expect(r.stderr).toContain('The session renews the token until');
    const creds = credentialsOf(dir);
    expect(creds.session?.store).toBe('file');
    const secretFile = path.join(dir, 'session-secret.json');
    expect(statSync(secretFile).mode & 0o777).toBe(0o600);
    expect(readFileSync(secretFile, 'utf8')).toMatch(/coffer_rt_1_/);
    expect(readFileSync(path.join(dir, 'credentials.json'), 'utf8')).not.toContain('coffer_rt_');

    await sleep(1500); // the one-second token is gone
    const first = await run(env);
    ok(first);
    expect(first.stdout).toBe('the-value');
    expect(credentialsOf(dir).accessToken).not.toBe(creds.accessToken);
    expect(readFileSync(secretFile, 'utf8')).toMatch(/coffer_rt_2_/);
    await sleep(1500);
    ok(await run(env));

    const ls = await runCli(['sessions', 'ls', '--json'], { env });
    ok(ls);
    const [mine] = JSON.parse(ls.stdout) as { id: string; current: boolean; refreshes: number }[];
    expect(mine).toMatchObject({ id: creds.session?.id, current: true });
    expect(mine?.refreshes).toBeGreaterThanOrEqual(2);

    const out = await runCli(['logout'], { env });
    ok(out);
    expect(out.stderr).toContain(`Ended session ${creds.session?.id}`);
    expect(existsSync(secretFile)).toBe(false);
    expect(existsSync(path.join(dir, 'credentials.json'))).toBe(false);
    expect((await sessionsOf(tenant)).map((s) => [s.id, s.state])).toEqual([[creds.session?.id, 'revoked']]);
  });

  it('refuses to read a session-secret file that other users can read', async () => {
    const tenant = await tenantWithSecret();
    const dir = tmp('coffer-cfg-');
    const env = { COFFER_URL: url, COFFER_CONFIG_DIR: dir, COFFER_CREDENTIAL_STORE: 'file' };
    ok(await login(tenant, env));
    chmodSync(path.join(dir, 'session-secret.json'), 0o644);
    expireCachedToken(dir);
    const r = await run(env);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain('can be read by other users');
    expect(r.stderr).toContain('chmod 600');
    expect(r.stdout).toBe('');
  });

  it('keeps the refresh credential and machine key in the keychain where there is one, never in an argument', async () => {
    const tenant = await tenantWithSecret();
    const dir = tmp('coffer-cfg-');
    const tool = fakeSecretTool();
    const env = { COFFER_URL: url, COFFER_CONFIG_DIR: dir, PATH: `${tool.bin}${path.delimiter}${process.env.PATH}` };
    const r = await login(tenant, env);
    ok(r);
    expect(r.stderr).toContain('in the keychain, via secret-tool');
    const id = credentialsOf(dir).session?.id as string;
    expect(credentialsOf(dir).session?.store).toBe('secret-tool');
    expect(existsSync(path.join(dir, 'session-secret.json'))).toBe(false);
    const kept = () =>
      JSON.parse(Buffer.from(readFileSync(path.join(tool.store, id), 'utf8'), 'base64url').toString('utf8')) as {
        refreshToken: string;
      };
    expect(kept().refreshToken).toMatch(/^coffer_rt_1_/);

    expireCachedToken(dir);
    const renewed = await run(env);
    ok(renewed);
    expect(renewed.stdout).toBe('the-value');
    expect(kept().refreshToken).toMatch(/^coffer_rt_2_/);
    expect(readFileSync(tool.argvLog, 'utf8')).not.toContain('coffer_rt_');

    // A copy of the config folder on a machine without this keychain has nothing to refresh with.
    const copy = tmp('coffer-copy-');
    cpSync(dir, copy, { recursive: true });
    expireCachedToken(copy);
    const emptyKeyring = fakeSecretTool();
    const elsewhere = await run({
      COFFER_URL: url,
      COFFER_CONFIG_DIR: copy,
      PATH: `${emptyKeyring.bin}${path.delimiter}${process.env.PATH}`,
    });
    expect(elsewhere.code).toBe(4);
    expect(elsewhere.stderr).toContain('not in the keychain (secret-tool) on this machine');

    ok(await runCli(['logout'], { env }));
    expect(existsSync(path.join(tool.store, id))).toBe(false);
  });

  it('ends the session for every copy when a copied 0600 file refreshes too (reuse detection)', async () => {
    const tenant = await tenantWithSecret();
    const dir = tmp('coffer-cfg-');
    const env = { COFFER_URL: url, COFFER_CONFIG_DIR: dir, COFFER_CREDENTIAL_STORE: 'file' };
    ok(await login(tenant, env));
    // The whole folder copied (a backup, a synced home directory): the file store holds the machine key too.
    const copy = tmp('coffer-copy-');
    mkdirSync(copy, { recursive: true });
    cpSync(dir, copy, { recursive: true });
    expireCachedToken(dir);
    ok(await run(env));
    expireCachedToken(copy);
    const thief = await run({ ...env, COFFER_CONFIG_DIR: copy });
    expect(thief.code).toBe(4);
    expect(thief.stderr).toContain('has ended');
    expireCachedToken(dir);
    const owner = await run(env);
    expect(owner.code).toBe(4);
    expect(owner.stderr).toContain('run coffer login again');
    const [s] = await sessionsOf(tenant);
    expect(s).toMatchObject({ state: 'revoked', revokedReason: 'refresh_reuse' });
  });

  it('lists and revokes sessions from the CLI; --no-session logs in without one', async () => {
    const tenant = await tenantWithSecret();
    const dir = tmp('coffer-cfg-');
    const env = { COFFER_URL: url, COFFER_CONFIG_DIR: dir, COFFER_CREDENTIAL_STORE: 'file' };
    ok(await login(tenant, env));
    const other = tmp('coffer-cfg-');
    ok(await login(tenant, { ...env, COFFER_CONFIG_DIR: other }));
    const ls = await runCli(['sessions', 'ls', '--all'], { env });
    ok(ls);
    const otherId = credentialsOf(other).session?.id as string;
    expect(ls.stdout).toContain(otherId);
    expect(ls.stdout).toContain(`* ${credentialsOf(dir).session?.id}`);
    ok(await runCli(['sessions', 'revoke', otherId], { env }));
    // Revoked: the next command's refresh is refused, and it says so (exit 4, the command never starts).
    const revoked = await run({ ...env, COFFER_CONFIG_DIR: other });
    expect(revoked.code).toBe(4);
    expect(revoked.stderr).toContain('has ended');
    expect(revoked.stdout).toBe('');

    const plain = tmp('coffer-cfg-');
    ok(
      await runCli(['login', '--no-session', '--client-id', tenant.admin.clientId, '--client-secret-stdin'], {
        env: { ...env, COFFER_CONFIG_DIR: plain },
        input: `${tenant.admin.clientSecret}\n`,
      }),
    );
    expect(credentialsOf(plain).session).toBeUndefined();
    expect(existsSync(path.join(plain, 'session-secret.json'))).toBe(false);
  });
});
