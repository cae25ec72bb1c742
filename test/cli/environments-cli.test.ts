import { writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { type CliTenant, cliTenant, runCli } from '../support/cli.ts';
import { listeningSuite } from '../support/suite.ts';
import type { TestApp } from '../support/test-app.ts';

let t: TestApp;
let url: string;
listeningSuite((s) => {
  ({ t, url } = s);
});

const STAGING = 'sk_test_staging_value_1';
const PRODUCTION = 'sk_live_production_value_1';
const printKey = `process.stdout.write(String(process.env.STRIPE_KEY))`;

/** Two environments (production protected), each holding its own STRIPE_KEY under shared/payments. */
async function twoEnvironments(c: CliTenant): Promise<void> {
  const created = await runCli(['env', 'create', 'staging', '--name', 'Staging'], { env: c.env });
  expect(created.code, created.stderr).toBe(0);
  expect(
    (await runCli(['env', 'create', 'production', '--name', 'Production', '--protected'], { env: c.env })).code,
  ).toBe(0);
  // --env after the command name, before it, and from COFFER_ENV.
  const s = await runCli(['set', 'shared/payments/STRIPE_KEY', '--value', STAGING, '--env', 'staging'], { env: c.env });
  expect(s.code, s.stderr).toBe(0);
  const p = await runCli(['--env', 'production', 'set', 'shared/payments/STRIPE_KEY', '--value', PRODUCTION], {
    env: c.env,
  });
  expect(p.code, p.stderr).toBe(0);
  const q = await runCli(['set', 'shared/payments/ONLY_STAGING', '--value', 'x-staging-only'], {
    env: { ...c.env, COFFER_ENV: 'staging' },
  });
  expect(q.code, q.stderr).toBe(0);
}

/**
 * A recording HTTP proxy in front of the test server: which URLs a run asked for, and whether they came from fetch
 * (the SDK; undici always sends sec-fetch-mode) or from node:http (the fast path).
 */
async function recordingProxy(): Promise<{
  url: string;
  requests: { url: string; viaFetch: boolean }[];
  close(): Promise<void>;
}> {
  const target = new URL(url);
  const requests: { url: string; viaFetch: boolean }[] = [];
  const server = http.createServer((req, res) => {
    requests.push({ url: req.url ?? '', viaFetch: req.headers['sec-fetch-mode'] !== undefined });
    const upstream = http.request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

describe('coffer --env and COFFER_ENV', () => {
  // A dozen CLI processes in a row: on a loaded 2-core machine each can take seconds to start.
  it('set, get, ls and run work in the environment named, --env winning over COFFER_ENV', async () => {
    const c = await cliTenant(t, url);
    await twoEnvironments(c);

    const get = (env: Record<string, string>, ...extra: string[]) =>
      runCli(['get', 'shared/payments/STRIPE_KEY', ...extra], { env: { ...c.env, ...env } });
    expect((await get({}, '--env', 'staging')).stdout.trim()).toBe(STAGING);
    expect((await get({ COFFER_ENV: 'production' })).stdout.trim()).toBe(PRODUCTION);
    expect((await get({ COFFER_ENV: 'production' }, '--env', 'staging')).stdout.trim()).toBe(STAGING);
    // Not in the tenant default, where a command without either goes.
    const inDefault = await get({});
    expect(inDefault.code).toBe(3);
    expect(inDefault.stdout).toBe('');

    const ls = await runCli(['ls', 'shared/payments', '--env', 'staging', '--json'], { env: c.env });
    expect(ls.code, ls.stderr).toBe(0);
    expect(ls.stdout).toContain('ONLY_STAGING');
    const lsProd = await runCli(['ls', 'shared/payments'], { env: { ...c.env, COFFER_ENV: 'production' } });
    expect(lsProd.stdout).toContain('STRIPE_KEY');
    expect(lsProd.stdout).not.toContain('ONLY_STAGING');

    // The full run (CI credentials, so the SDK) injects production's values.
    const full = await runCli(
      ['run', '--env', 'production', '--bundle', 'shared/payments', '--', process.execPath, '-e', printKey],
      { env: c.credentialsEnv },
    );
    expect(full.code, full.stderr).toBe(0);
    expect(full.stdout).toBe(PRODUCTION);
    const fullFromEnv = await runCli(['run', '--bundle', 'shared/payments', '--', process.execPath, '-e', printKey], {
      env: { ...c.credentialsEnv, COFFER_ENV: 'staging' },
    });
    expect(fullFromEnv.stdout).toBe(STAGING);

    const bad = await get({}, '--env', 'Not A Slug');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--env must be an environment slug');
    c.cleanup();
  }, 120_000);

  it("the fast coffer run (a cached token, no SDK) asks for the environment's bundle too", async () => {
    const c = await cliTenant(t, url);
    await twoEnvironments(c);
    const proxy = await recordingProxy();
    try {
      // The cached login is for the proxy's URL, so every request of the run passes through it.
      writeFileSync(
        path.join(c.configDir, 'credentials.json'),
        JSON.stringify({
          url: proxy.url,
          clientId: c.admin.clientId,
          accessToken: c.adminToken,
          expiresAt: Date.now() + 600_000,
        }),
        { mode: 0o600 },
      );
      const env = { ...c.env, COFFER_URL: proxy.url };
      const viaFlag = await runCli(
        ['run', '--env', 'production', '--bundle', 'shared/payments', '--', process.execPath, '-e', printKey],
        { env },
      );
      expect(viaFlag.code, viaFlag.stderr).toBe(0);
      expect(viaFlag.stdout).toBe(PRODUCTION);
      const viaEnv = await runCli(['run', '--bundle=shared/payments', '--', process.execPath, '-e', printKey], {
        env: { ...env, COFFER_ENV: 'staging' },
      });
      expect(viaEnv.stdout).toBe(STAGING);
      const flagWins = await runCli(
        ['run', '--env=production', '--bundle', 'shared/payments', '--', process.execPath, '-e', printKey],
        { env: { ...env, COFFER_ENV: 'staging' } },
      );
      expect(flagWins.stdout).toBe(PRODUCTION);
      expect(proxy.requests).toEqual([
        { url: '/v1/bundles/shared/payments?env=production', viaFetch: false },
        { url: '/v1/bundles/shared/payments?env=staging', viaFetch: false },
        { url: '/v1/bundles/shared/payments?env=production', viaFetch: false },
      ]);
    } finally {
      await proxy.close();
    }
    c.cleanup();
  });
});

describe('coffer env', () => {
  it('lists, updates and removes environments', async () => {
    const c = await cliTenant(t, url);
    await twoEnvironments(c);
    const ls = await runCli(['env', 'ls'], { env: c.env });
    expect(ls.code, ls.stderr).toBe(0);
    expect(ls.stdout.split('\n')[0]).toMatch(/^SLUG\s+NAME\s+PROTECTED\s+DEFAULT\s+CREATED$/);
    expect(ls.stdout).toMatch(/^default\s+.*default/m);
    expect(ls.stdout).toMatch(/^production\s+Production\s+protected/m);

    const up = await runCli(['env', 'update', 'production', '--no-protected', '--name', 'Prod'], { env: c.env });
    expect(up.code, up.stderr).toBe(0);
    const json = JSON.parse((await runCli(['env', 'ls', '--json'], { env: c.env })).stdout) as {
      slug: string;
      name: string;
      protected: boolean;
    }[];
    expect(json.find((e) => e.slug === 'production')).toMatchObject({ name: 'Prod', protected: false });
    expect((await runCli(['env', 'update', 'production'], { env: c.env })).code).toBe(2);

    expect((await runCli(['env', 'create', 'preview-1', '--name', 'Preview'], { env: c.env })).code).toBe(0);
    const rm = await runCli(['env', 'rm', 'preview-1'], { env: c.env });
    expect(rm.code, rm.stderr).toBe(0);
    // One that holds secrets stays.
    const busy = await runCli(['env', 'rm', 'staging'], { env: c.env });
    expect(busy.code).not.toBe(0);
    const after = JSON.parse((await runCli(['env', 'ls', '--json'], { env: c.env })).stdout) as { slug: string }[];
    expect(after.map((e) => e.slug).sort()).toEqual(['default', 'production', 'staging']);
    c.cleanup();
  });

  it('diffs two environments as a table without a value', async () => {
    const c = await cliTenant(t, url);
    await twoEnvironments(c);
    await runCli(['set', 'shared/payments/SAME', '--value', 'same-value-everywhere', '--env', 'staging'], {
      env: c.env,
    });
    await runCli(['set', 'shared/payments/SAME', '--value', 'same-value-everywhere', '--env', 'production'], {
      env: c.env,
    });
    const r = await runCli(['env', 'diff', 'staging', 'production', 'shared/payments'], { env: c.env });
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^NAME\s+STATE\s+STAGING\s+PRODUCTION\s+FORMAT\s+ROTATION$/);
    const row = (name: string) => lines.find((l) => l.startsWith(`${name} `)) ?? '';
    expect(row('STRIPE_KEY')).toMatch(/^STRIPE_KEY\s+different\s+1\s+1/);
    expect(row('ONLY_STAGING')).toMatch(/^ONLY_STAGING\s+only_in_from\s+1\s+-/);
    expect(row('SAME')).toMatch(/^SAME\s+same\s+1\s+1/);
    for (const v of [STAGING, PRODUCTION, 'same-value-everywhere', 'x-staging-only'])
      expect(r.stdout + r.stderr).not.toContain(v);
    c.cleanup();
  });

  it('promotes with compare-and-set: a stale promotion names every stale name, exits 1 and changes nothing', async () => {
    const c = await cliTenant(t, url);
    await twoEnvironments(c);
    const stale = await runCli(
      [
        'env',
        'promote',
        'staging',
        'production',
        'shared/payments',
        '--expect',
        'STRIPE_KEY=7',
        '--expect',
        'ONLY_STAGING=3',
      ],
      { env: c.env },
    );
    expect(stale.code).toBe(1);
    expect(stale.stdout).toBe('');
    expect(stale.stderr).toMatch(/^stale STRIPE_KEY: /m);
    expect(stale.stderr).toMatch(/^stale ONLY_STAGING: /m);
    expect(stale.stderr).toMatch(/nothing was promoted: (STRIPE_KEY, ONLY_STAGING|ONLY_STAGING, STRIPE_KEY) are stale/);
    const prod = () =>
      runCli(['get', 'shared/payments/STRIPE_KEY', '--env', 'production'], { env: c.env }).then((r) => r.stdout.trim());
    expect(await prod()).toBe(PRODUCTION);

    const ok = await runCli(
      [
        'env',
        'promote',
        'staging',
        'production',
        'shared/payments',
        '--expect',
        'STRIPE_KEY=1',
        '--expect',
        'ONLY_STAGING=0',
      ],
      { env: c.env },
    );
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/^STRIPE_KEY\s+1\s+1 → 2\s+promoted$/m);
    expect(ok.stdout).toMatch(/^ONLY_STAGING\s+1\s+- → 1\s+promoted$/m);
    expect(ok.stderr).toContain('Promoted 2 of 2 names of shared/payments from staging to production.');
    expect(ok.stdout + ok.stderr).not.toContain(STAGING);
    expect(await prod()).toBe(STAGING);

    // Again, by name: already the same, so nothing new is written.
    const again = await runCli(
      ['env', 'promote', 'staging', 'production', 'shared/payments', '--name', 'STRIPE_KEY', '--json'],
      { env: c.env },
    );
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout).items).toEqual([
      { name: 'STRIPE_KEY', fromVersion: 1, toVersion: 2, previousToVersion: 2, changed: false },
    ]);
    expect((await runCli(['env', 'promote', 'staging', 'production', 'shared/payments', '--expect', 'X'])).code).toBe(
      2,
    );
    c.cleanup();
  });
});

describe('coffer check and plan per tier', () => {
  it('checks in the environment the manifest maps the tier to, unless --env or COFFER_ENV says otherwise', async () => {
    const c = await cliTenant(t, url);
    await twoEnvironments(c);
    const file = path.join(c.configDir, 'deploy.yaml');
    writeFileSync(
      file,
      YAML.stringify({
        environments: { cloud: 'production', desktop: 'staging' },
        secrets: [
          { path: 'shared/payments/STRIPE_KEY', class: 'infrastructure' },
          { path: 'shared/payments/ONLY_STAGING', class: 'service' },
        ],
      }),
    );
    const desktop = await runCli(['check', file, '--tier', 'desktop'], { env: c.env });
    expect(desktop.code, desktop.stdout + desktop.stderr).toBe(0);
    expect(desktop.stderr).toContain("in the staging environment (the manifest's environment for desktop)");
    expect(desktop.stderr).toContain('All 2 secrets');

    const cloud = await runCli(['check', file, '--tier', 'cloud'], { env: c.env });
    expect(cloud.code).toBe(1);
    expect(cloud.stdout).toContain('✓ shared/payments/STRIPE_KEY  ok (version 1)');
    expect(cloud.stdout).toMatch(/✗ shared\/payments\/ONLY_STAGING {2}missing: /);
    expect(cloud.stderr).toContain('1 of 2 secrets fail');
    expect(cloud.stderr).toContain('in production');

    const json = JSON.parse((await runCli(['check', file, '--tier', 'cloud', '--json'], { env: c.env })).stdout);
    expect(json).toMatchObject({ ok: false, environment: 'production', checked: 2, failed: 1 });

    const flag = await runCli(['check', file, '--tier', 'cloud', '--env', 'staging'], { env: c.env });
    expect(flag.code).toBe(0);
    expect(flag.stderr).toContain('in the staging environment (--env)');

    const fromEnv = await runCli(['check', file, '--tier', 'desktop'], { env: { ...c.env, COFFER_ENV: 'production' } });
    expect(fromEnv.code).toBe(1);
    expect(fromEnv.stderr).toContain("COFFER_ENV=production overrides the manifest's staging for desktop");

    // No tier: the tenant default, where neither secret is.
    const none = await runCli(['check', file], { env: c.env });
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('in the default environment (the tenant default)');
    expect(none.stderr).toContain('2 of 2 secrets fail');

    const plan = JSON.parse((await runCli(['plan', file, '--tier', 'cloud', '--json'])).stdout);
    expect(plan).toMatchObject({ tier: 'cloud', environment: 'production' });
    const planLocal = await runCli(['plan', file, '--tier', 'local']);
    expect(planLocal.stderr).toContain('injected from the default environment');

    const invalid = path.join(c.configDir, 'bad.yaml');
    writeFileSync(
      invalid,
      YAML.stringify({ environments: { mainframe: 'x', cloud: 'Prod' }, secrets: [{ path: 'shared/p/A' }] }),
    );
    const inv = await runCli(['check', invalid, '--tier', 'cloud'], { env: c.env });
    expect(inv.code).toBe(2);
    expect(inv.stderr).toContain('environments');
    c.cleanup();
  });
});
