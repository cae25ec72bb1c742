import { chmodSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cliTenant, runCli } from '../support/cli.ts';
import { createIdentity } from '../support/factories.ts';
import { listeningSuite } from '../support/suite.ts';
import type { TestApp } from '../support/test-app.ts';

let t: TestApp;
let url: string;
listeningSuite((s) => {
  ({ t, url } = s);
});

describe('coffer login and whoami', () => {
  it('logs in from the environment, caches only the token in a 0600 file, and whoami uses it', async () => {
    const c = await cliTenant(t, url);
    rmSync(path.join(c.configDir, 'credentials.json'));
    const login = await runCli(['login'], { env: c.credentialsEnv });
    expect(login.code).toBe(0);
    expect(login.stderr).toContain(`Logged in to ${url}`);
    expect(login.stdout).toBe('');
    expect(login.stderr).not.toContain(c.admin.clientSecret);

    const file = path.join(c.configDir, 'credentials.json');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const stored = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    expect(Object.keys(stored).sort()).toEqual(['accessToken', 'clientId', 'expiresAt', 'session', 'url']);
    // The session's refresh credential is not in it: it is in its own store (here the 0600 file).
    expect(readFileSync(file, 'utf8')).not.toContain('coffer_rt_');

    // No credentials in the environment now: only the cached token.
    const me = await runCli(['whoami', '--json'], { env: { COFFER_URL: url, COFFER_CONFIG_DIR: c.configDir } });
    expect(me.code).toBe(0);
    expect(JSON.parse(me.stdout)).toMatchObject({ role: 'admin', tenantId: c.tenant.id, clientId: c.admin.clientId });

    const human = await runCli(['whoami'], { env: { COFFER_URL: url, COFFER_CONFIG_DIR: c.configDir } });
    expect(human.stdout).toMatch(/role\s+admin/);
    expect(human.stdout).not.toContain('\u001b['); // no colours off a terminal

    const out = await runCli(['logout'], { env: { COFFER_CONFIG_DIR: c.configDir, COFFER_CREDENTIAL_STORE: 'file' } });
    expect(out.code).toBe(0);
    const after = await runCli(['whoami'], { env: { COFFER_URL: url, COFFER_CONFIG_DIR: c.configDir } });
    expect(after.code).toBe(4);
    expect(after.stderr).toContain('not logged in');
    c.cleanup();
  });

  it('takes --url after the command name, as the README and `coffer login --help` write it, over COFFER_URL', async () => {
    const c = await cliTenant(t, url);
    const env = {
      COFFER_URL: 'http://127.0.0.1:9',
      COFFER_CONFIG_DIR: c.configDir,
      COFFER_CLIENT_ID: c.admin.clientId,
      COFFER_CLIENT_SECRET: c.admin.clientSecret,
    };
    const login = await runCli(['login', '--url', url], { env });
    expect(login.stderr).toContain(`Logged in to ${url}`);
    expect(login.code).toBe(0);
    const me = await runCli(['whoami', '--url', url, '--json'], { env });
    expect(me.code).toBe(0);
    expect(JSON.parse(me.stdout)).toMatchObject({ role: 'admin' });
    c.cleanup();
  });

  it('takes the credentials from flags and stdin, saves the secret only when asked, and refuses a bad one with exit 4', async () => {
    const c = await cliTenant(t, url);
    const env = { COFFER_URL: url, COFFER_CONFIG_DIR: c.configDir };
    const saved = await runCli(['login', '--client-id', c.admin.clientId, '--client-secret-stdin', '--save-secret'], {
      env,
      input: `${c.admin.clientSecret}\n`,
    });
    expect(saved.code).toBe(0);
    const stored = JSON.parse(readFileSync(path.join(c.configDir, 'credentials.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    expect(stored.clientSecret).toBe(c.admin.clientSecret);

    const wrong = 'not-the-secret-at-all-0123456789';
    const bad = await runCli(['login', '--client-id', c.admin.clientId, '--client-secret', wrong], { env });
    expect(bad.code).toBe(4);
    expect(bad.stderr).toContain('unauthorized');
    expect(bad.stderr).not.toContain(wrong);

    const noTerminal = await runCli(['login', '--client-id', c.admin.clientId], { env });
    expect(noTerminal.code).toBe(2);
    expect(noTerminal.stderr).toContain('no terminal to prompt on');
    c.cleanup();
  });

  it('refuses a credentials file that other users can read', async () => {
    const c = await cliTenant(t, url);
    expect((await runCli(['login'], { env: c.credentialsEnv })).code).toBe(0);
    const file = path.join(c.configDir, 'credentials.json');
    chmodSync(file, 0o644);
    const r = await runCli(['whoami'], { env: { COFFER_URL: url, COFFER_CONFIG_DIR: c.configDir } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('chmod 600');
    c.cleanup();
  });
});

describe('coffer get, set, ls, rm, restore, history, rotate', () => {
  it('writes from every source, reads values exactly, and lists without values', async () => {
    const c = await cliTenant(t, url);
    const set1 = await runCli(['set', 'sandbox/sbx-1/DB_URL', '--format', 'postgres-url'], {
      env: c.env,
      input: 'postgres://app:pw@db:5432/app\n',
    });
    expect(set1.code).toBe(0);
    expect(set1.stderr).toContain('Created sandbox/sbx-1/DB_URL (version 1)');

    const file = path.join(c.configDir, 'key.pem');
    writeFileSync(file, 'line one\nline two\n');
    expect((await runCli(['set', 'sandbox/sbx-1/MULTI', '--from-file', file], { env: c.env })).code).toBe(0);
    expect((await runCli(['set', 'sandbox/sbx-1/FLAG', '--value', 'on'], { env: c.env })).code).toBe(0);

    const get = await runCli(['get', 'sandbox/sbx-1/DB_URL'], { env: c.env });
    expect(get).toMatchObject({ code: 0, stdout: 'postgres://app:pw@db:5432/app' });
    const multi = await runCli(['get', 'sandbox/sbx-1/MULTI'], { env: c.env });
    expect(multi.stdout).toBe('line one\nline two\n');
    const asJson = JSON.parse((await runCli(['get', 'sandbox/sbx-1/DB_URL', '--json'], { env: c.env })).stdout);
    expect(asJson).toMatchObject({ version: 1, format: 'postgres-url', value: 'postgres://app:pw@db:5432/app' });

    const ls = await runCli(['ls', 'sandbox/sbx-1'], { env: c.env });
    expect(ls.code).toBe(0);
    expect(ls.stdout).toMatch(/^PATH\s+VERSION\s+FORMAT/);
    expect(ls.stdout).toContain('sandbox/sbx-1/DB_URL');
    expect(ls.stdout).toContain('postgres-url');
    expect(ls.stdout).not.toContain('postgres://');
    const lsJson = JSON.parse((await runCli(['ls', 'sandbox/sbx-1/M', '--json'], { env: c.env })).stdout) as {
      name: string;
    }[];
    expect(lsJson.map((s) => s.name)).toEqual(['MULTI']);
    c.cleanup();
  });

  it('refuses a value that breaks the format with exit 1 and without echoing it', async () => {
    const c = await cliTenant(t, url);
    const empty = await runCli(['set', 'sandbox/sbx-1/EMPTY'], { env: c.env, input: '' });
    expect(empty.code).toBe(2);
    expect(empty.stderr).toContain('standard input was empty');
    expect((await runCli(['set', 'sandbox/sbx-1/EMPTY', '--value', ''], { env: c.env })).code).toBe(0);
    expect((await runCli(['get', 'sandbox/sbx-1/EMPTY'], { env: c.env })).stdout).toBe('');

    const value = 'definitely-not-a-url-4711';
    const r = await runCli(['set', 'sandbox/sbx-1/DB_URL', '--format', 'postgres-url', '--value', value], {
      env: c.env,
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('unprocessable');
    expect(r.stderr).not.toContain(value);
    c.cleanup();
  });

  it('keeps versions, rotates, deletes, restores and purges, with exit 3 for what is not there', async () => {
    const c = await cliTenant(t, url);
    await runCli(['set', 'shared/team/TOKEN', '--value', 'v1'], { env: c.env });
    await runCli(['set', 'shared/team/TOKEN', '--value', 'v2'], { env: c.env });
    const conflict = await runCli(['set', 'shared/team/TOKEN', '--value', 'v3', '--if-version', '1'], { env: c.env });
    expect(conflict.code).toBe(1);
    expect(conflict.stderr).toContain('conflict');

    const rotated = await runCli(['rotate', 'shared/team/TOKEN', '--value', 'v3'], { env: c.env });
    expect(rotated.code).toBe(0);
    expect(rotated.stderr).toContain('now version 3');
    expect((await runCli(['get', 'shared/team/TOKEN', '--version', 'previous'], { env: c.env })).stdout).toBe('v2');
    expect((await runCli(['get', 'shared/team/TOKEN', '--version', '1'], { env: c.env })).stdout).toBe('v1');

    const history = await runCli(['history', 'shared/team/TOKEN'], { env: c.env });
    expect(history.stdout.split('\n')[1]).toMatch(/^3\s+current/);
    expect(history.stdout).toMatch(/\n2\s+previous.*served until/);
    // By whom: the identity's name, not its id.
    const me = JSON.parse((await runCli(['whoami', '--json'], { env: c.env })).stdout) as {
      name: string;
      identityId: string;
    };
    expect(history.stdout.split('\n')[1]).toContain(me.name);
    expect(history.stdout).not.toContain(me.identityId);
    const hJson = JSON.parse((await runCli(['history', 'shared/team/TOKEN', '--json'], { env: c.env })).stdout) as {
      version: number;
    }[];
    expect(hJson.map((v) => v.version)).toEqual([3, 2, 1]);

    const noGenerator = await runCli(['rotate', 'shared/team/TOKEN'], { env: c.env });
    expect(noGenerator.code).toBe(1);
    expect(noGenerator.stderr).toContain('no generator');

    expect((await runCli(['rm', 'shared/team/TOKEN'], { env: c.env })).code).toBe(0);
    const gone = await runCli(['get', 'shared/team/TOKEN'], { env: c.env });
    expect(gone.code).toBe(3);
    expect(gone.stderr).toContain('not_found');
    expect((await runCli(['restore', 'shared/team/TOKEN'], { env: c.env })).stderr).toContain(
      'Restored shared/team/TOKEN at version 3',
    );
    expect((await runCli(['get', 'shared/team/TOKEN'], { env: c.env })).stdout).toBe('v3');

    const unconfirmed = await runCli(['rm', 'shared/team/TOKEN', '--purge'], { env: c.env });
    expect(unconfirmed.code).toBe(2);
    expect((await runCli(['rm', 'shared/team/TOKEN', '--purge', '--yes'], { env: c.env })).code).toBe(0);
    expect((await runCli(['restore', 'shared/team/TOKEN'], { env: c.env })).code).toBe(3);
    expect((await runCli(['history', 'shared/team/NOPE'], { env: c.env })).code).toBe(3);
    c.cleanup();
  });

  it('answers 2 for usage errors and 4 when the identity may not', async () => {
    const c = await cliTenant(t, url);
    const badPath = await runCli(['get', 'sandbox/only-two'], { env: c.env });
    expect(badPath.code).toBe(2);
    expect(badPath.stderr).toContain('kind/owner/name');
    const unknown = await runCli(['frobnicate'], { env: c.env });
    expect(unknown.code).toBe(2);
    const missingArg = await runCli(['get'], { env: c.env });
    expect(missingArg.code).toBe(2);

    const svc = await createIdentity(t.app, c.adminToken, {
      role: 'service',
      policies: [{ path: 'sandbox/sbx-1/*', capabilities: ['read'] }],
    });
    const env = {
      ...c.credentialsEnv,
      COFFER_CLIENT_ID: svc.identity.clientId,
      COFFER_CLIENT_SECRET: svc.clientSecret,
    };
    const denied = await runCli(['set', 'sandbox/sbx-2/X', '--value', 'nope'], { env });
    expect(denied.code).toBe(4);
    expect(denied.stderr).toContain('forbidden');
    c.cleanup();
  });

  it('shows help with examples for every command', async () => {
    for (const cmd of [
      'login',
      'whoami',
      'get',
      'set',
      'ls',
      'rm',
      'restore',
      'history',
      'rotate',
      'run',
      'export',
      'import',
      'check',
      'plan',
      'audit',
      'intake',
    ]) {
      const r = await runCli([cmd, '--help']);
      expect(r.code, cmd).toBe(0);
      expect(r.stdout, cmd).toContain('Examples:');
      expect(r.stdout, cmd).toContain(`$ coffer ${cmd}`);
      expect(r.stdout, cmd).toMatch(/Exit codes: .*(2 usage|126)/);
    }
    const root = await runCli(['--help']);
    expect(root.stdout).toContain('Exit codes:');
    expect(root.stdout).toMatch(/3\s+not found/);
  });
});
