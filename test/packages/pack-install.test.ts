// The packages as a service outside this repository gets them: `npm pack` of the contracts, the SDK and the CLI,
// installed into an empty project in a temporary folder, run with plain Node (no TypeScript tooling) against a
// real server. Node 22 and 24 come from the npm registry's `node` package, Bun and Deno from their binary packages
// (@oven/bun-linux-x64, @deno/linux-x64-glibc); each is skipped, saying why, where it cannot be had.
import { execFile, execFileSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CofferClient } from '@coffer/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../support/build.ts';
import { baseEnv } from '../support/cli.ts';
import { docBlocks } from '../support/doc-blocks.ts';
import { createTenant, type TestTenant } from '../support/factories.ts';
import { createTestApp, type TestApp } from '../support/test-app.ts';

const NPM_FLAGS = ['--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'];

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function run(
  file: string,
  args: string[],
  o: { cwd: string; env: Record<string, string>; input?: string },
): Promise<Result> {
  return new Promise((resolve) => {
    const child = execFile(file, args, { cwd: o.cwd, env: o.env, timeout: 120_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
    child.stdin?.end(o.input ?? '');
  });
}

let t: TestApp;
let url: string;
let tmp: string;
let project: string;
let tenant: TestTenant;
/** A user's shell: no COFFER_* from the runner, and nothing that would load a TypeScript loader into node. */
let env: Record<string, string>;

beforeAll(async () => {
  t = await createTestApp();
  url = await t.app.listen({ host: '127.0.0.1', port: 0 });
  tmp = mkdtempSync(path.join(os.tmpdir(), 'coffer-pack-'));
  chmodSync(tmp, 0o755);
  const tarballs = path.join(tmp, 'tarballs');
  mkdirSync(tarballs);
  // prepack builds the contracts and the SDK, as `npm publish` would. The CLI's bundle is the one the global setup
  // built: rebuilding it here would pull its files from under the CLI tests running beside this one.
  const pack = (workspaces: string[], extra: string[] = []) =>
    execFileSync(
      'npm',
      ['pack', '--loglevel=error', ...extra, ...workspaces.flatMap((w) => ['-w', w]), '--pack-destination', tarballs],
      { cwd: repoRoot, stdio: ['ignore', 'ignore', 'inherit'] },
    );
  pack(['@coffer/contracts', '@coffer/sdk']);
  pack(['@coffer/cli'], ['--ignore-scripts']);
  project = path.join(tmp, 'service');
  mkdirSync(project);
  writeFileSync(
    path.join(project, 'package.json'),
    JSON.stringify({ name: 'a-service', private: true, type: 'module' }),
  );
  const files = readdirSync(tarballs).map((f) => path.join(tarballs, f));
  execFileSync('npm', ['install', ...NPM_FLAGS, ...files], { cwd: project, stdio: ['ignore', 'ignore', 'inherit'] });

  tenant = await createTenant(t.app);
  const admin = new CofferClient({ baseUrl: url, ...tenant.admin });
  await admin.putSecret('sandbox/sbx-42/DATABASE_URL', 'postgres://app:pw@db:5432/app', { format: 'postgres-url' });
  await admin.putSecret('sandbox/sbx-42/SESSION_KEY', 'a'.repeat(64), { format: 'hex' });
  // The session's secrets in the 0600 file, not in the keychain of whoever runs the tests.
  env = baseEnv({ COFFER_CONFIG_DIR: path.join(tmp, 'config'), COFFER_CREDENTIAL_STORE: 'file' });
  delete env.NODE_OPTIONS;
}, 300_000);

afterAll(async () => {
  await t?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

const sdkExamples = () => {
  const blocks = docBlocks('packages/sdk/README.md').filter((b) => b.directive === 'node');
  expect(blocks).toHaveLength(2);
  return blocks.map((b) => b.code);
};

/** Runs the SDK README's two examples, saved as .mjs files in the project, with the given runtime. */
async function runSdkExamples(runtime: string, runtimeArgs: string[] = []): Promise<void> {
  const [startup, cache] = sdkExamples();
  writeFileSync(path.join(project, 'service.mjs'), startup ?? '');
  writeFileSync(path.join(project, 'cache.mjs'), cache ?? '');
  const exampleEnv = {
    ...env,
    COFFER_URL: url,
    COFFER_CLIENT_ID: tenant.admin.clientId,
    COFFER_CLIENT_SECRET: tenant.admin.clientSecret,
  };
  const first = await run(runtime, [...runtimeArgs, 'service.mjs'], { cwd: project, env: exampleEnv });
  expect(first.stderr).toBe('');
  expect(first.code).toBe(0);
  expect(first.stdout).toBe('loaded 2 secrets for sandbox/sbx-42\n');
  const second = await run(runtime, [...runtimeArgs, 'cache.mjs'], { cwd: project, env: exampleEnv });
  expect(second.code, second.stderr).toBe(0);
  expect(second.stdout).toBe([0, 1, 2].map((n) => `request ${n}: signing with version 1 (64 characters)\n`).join(''));
}

/** The binary of the registry's `node` package at a major version, or why it cannot be had. */
function registryNode(major: number): { bin: string } | { reason: string } {
  try {
    const bin = execFileSync('npx', ['-y', `node@${major}`, '-p', 'process.execPath'], {
      cwd: tmp,
      encoding: 'utf8',
      timeout: 120_000,
      stdio: ['ignore', 'pipe', 'pipe'],
    }).trim();
    return { bin };
  } catch (e) {
    return { reason: `npx -y node@${major} failed (${e instanceof Error ? e.message.split('\n')[0] : 'error'})` };
  }
}

/** A runtime's binary from its npm package (installed without scripts: the binary is in the package). */
function registryBinary(pkg: string, relative: string): { bin: string } | { reason: string } {
  if (process.platform !== 'linux' || process.arch !== 'x64') return { reason: `${pkg} is the linux-x64 build` };
  const dir = path.join(tmp, 'runtimes');
  mkdirSync(dir, { recursive: true });
  try {
    execFileSync('npm', ['install', ...NPM_FLAGS, '--ignore-scripts', '--prefix', dir, pkg], {
      stdio: ['ignore', 'ignore', 'pipe'],
      timeout: 180_000,
    });
  } catch (e) {
    return { reason: `npm install ${pkg} failed (${e instanceof Error ? e.message.split('\n')[0] : 'error'})` };
  }
  const bin = path.join(dir, 'node_modules', pkg, relative);
  return existsSync(bin) ? { bin } : { reason: `${pkg} holds no ${relative}` };
}

describe('the packed packages, installed outside the repository', () => {
  it('install as built JavaScript with declarations, and nothing of a TypeScript toolchain', () => {
    const installed = (p: string) => path.join(project, 'node_modules', p);
    for (const p of ['@coffer/contracts', '@coffer/sdk', '@coffer/cli']) {
      // a copy in the project, not a link into this checkout
      expect(realpathSync(installed(p)).startsWith(realpathSync(project))).toBe(true);
    }
    for (const f of ['index.js', 'index.cjs', 'index.d.ts', 'index.js.map']) {
      expect(existsSync(installed(`@coffer/sdk/dist/${f}`)), f).toBe(true);
      expect(existsSync(installed(`@coffer/contracts/dist/${f}`)), f).toBe(true);
    }
    for (const tool of ['typescript', 'tsx', 'esbuild', 'commander', 'yaml', 'dotenv']) {
      expect(existsSync(installed(tool)), tool).toBe(false);
    }
    const cli = JSON.parse(readFileSync(installed('@coffer/cli/package.json'), 'utf8')) as Record<string, unknown>;
    expect(cli.dependencies).toBeUndefined();
    const sdk = JSON.parse(readFileSync(installed('@coffer/sdk/package.json'), 'utf8')) as Record<string, unknown>;
    expect(Object.keys(sdk.dependencies as object).sort()).toEqual(['@coffer/contracts', 'zod']);
  });

  it("runs the SDK README's examples with plain node", async () => {
    await runSdkExamples(process.execPath);
  }, 240_000);

  it('loads with require() and type-checks for a TypeScript consumer', async () => {
    const cjs = await run(
      process.execPath,
      [
        '-e',
        "const s = require('@coffer/sdk'); const c = require('@coffer/contracts'); console.log(typeof s.CofferClient, c.WIRE_FORMAT_VERSION, c.API_PREFIX)",
      ],
      { cwd: project, env },
    );
    expect(cjs.stdout, cjs.stderr).toBe('function 1.0 /v1\n');
    // The declarations, checked by the repository's compiler as a consumer's would: nodenext resolution, strict.
    writeFileSync(
      path.join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { module: 'nodenext', strict: true, noEmit: true, types: [] },
        files: ['check.mts'],
      }),
    );
    writeFileSync(
      path.join(project, 'check.mts'),
      [
        "import { CofferClient, CofferError, type SecretPath } from '@coffer/sdk';",
        "import { WIRE_FORMAT_VERSION, routes } from '@coffer/contracts';",
        "const c = new CofferClient({ baseUrl: 'http://127.0.0.1:7400' });",
        "const bundle: Promise<{ values: Record<string, string> }> = c.getBundle('sandbox', 'sbx-42');",
        "const path: SecretPath = { kind: 'sandbox', owner: 'o', name: 'N' };",
        "const method: 'GET' = routes.getSecret.method;",
        'const version: string = WIRE_FORMAT_VERSION;',
        '// @ts-expect-error: not a secret kind',
        "const wrong: SecretPath = { kind: 'nope', owner: 'o', name: 'N' };",
        'export { bundle, path, method, version, wrong, CofferError };',
      ].join('\n'),
    );
    const tsc = path.join(repoRoot, 'node_modules/typescript/bin/tsc');
    const checked = await run(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: project, env });
    expect(checked.stdout + checked.stderr).toBe('');
    expect(checked.code).toBe(0);
  }, 240_000);

  for (const major of [22, 24]) {
    it(`runs the SDK README's examples on Node ${major} (from the registry's node package)`, async (ctx) => {
      const node = registryNode(major);
      if ('reason' in node) return ctx.skip(node.reason);
      await runSdkExamples(node.bin);
    }, 240_000);
  }

  it("runs the SDK README's examples on Bun (@oven/bun-linux-x64)", async (ctx) => {
    const bun = registryBinary('@oven/bun-linux-x64', 'bin/bun');
    if ('reason' in bun) return ctx.skip(bun.reason);
    await runSdkExamples(bun.bin);
  }, 240_000);

  it("runs the SDK README's examples on Deno (@deno/linux-x64-glibc), with network and environment access only", async (ctx) => {
    const deno = registryBinary('@deno/linux-x64-glibc', 'deno');
    if ('reason' in deno) return ctx.skip(deno.reason);
    await runSdkExamples(deno.bin, ['run', '--allow-net', '--allow-env']);
  }, 240_000);

  it('runs the installed coffer: login --url, run with the cached token, check', async () => {
    const coffer = path.join(project, 'node_modules/.bin/coffer');
    const login = await run(
      coffer,
      ['login', '--url', url, '--client-id', tenant.admin.clientId, '--client-secret-stdin'],
      {
        cwd: project,
        env,
        input: `${tenant.admin.clientSecret}\n`,
      },
    );
    expect(login.code, login.stderr).toBe(0);
    const stored = JSON.parse(readFileSync(path.join(env.COFFER_CONFIG_DIR as string, 'credentials.json'), 'utf8'));
    expect(stored).toMatchObject({ url, clientId: tenant.admin.clientId });
    expect(stored.clientSecret).toBeUndefined();

    // No COFFER_URL and no client credentials: the server and the token come from what login cached.
    const injected = await run(
      coffer,
      [
        'run',
        '--bundle',
        'sandbox/sbx-42',
        '--',
        process.execPath,
        '-e',
        'console.log(new URL(process.env.DATABASE_URL).host, process.env.SESSION_KEY.length)',
      ],
      { cwd: project, env },
    );
    expect(injected.stderr).toBe('');
    expect(injected.stdout).toBe('db:5432 64\n');
    const exit = await run(
      coffer,
      ['run', '--bundle', 'sandbox/sbx-42', '--', process.execPath, '-e', 'process.exit(7)'],
      { cwd: project, env },
    );
    expect(exit.code).toBe(7);
    const empty = await run(coffer, ['run', '--bundle', 'sandbox/nobody', '--', 'true'], { cwd: project, env });
    expect(empty.code).toBe(3);
    expect(empty.stderr).toContain('sandbox/nobody has no secrets this identity may read');

    mkdirSync(path.join(project, 'deploy'), { recursive: true });
    const manifest = (extra: string) =>
      `version: 1\nsecrets:\n  - path: sandbox/sbx-42/DATABASE_URL\n    format: postgres-url\n  - path: sandbox/sbx-42/SESSION_KEY\n    format: hex\n${extra}`;
    writeFileSync(path.join(project, 'deploy/secrets.yaml'), manifest(''));
    const ok = await run(coffer, ['check', 'deploy/secrets.yaml', '--json'], { cwd: project, env });
    expect(ok.code, ok.stderr).toBe(0);
    const results = (JSON.parse(ok.stdout) as { results: { path: string; ok: boolean }[] }).results;
    expect(results.map((r) => [r.path, r.ok])).toEqual([
      ['sandbox/sbx-42/DATABASE_URL', true],
      ['sandbox/sbx-42/SESSION_KEY', true],
    ]);
    writeFileSync(path.join(project, 'deploy/secrets.yaml'), manifest('  - path: sandbox/sbx-42/MISSING\n'));
    const failing = await run(coffer, ['check', 'deploy/secrets.yaml'], { cwd: project, env });
    expect(failing.code).toBe(1);
    expect(failing.stdout + failing.stderr).toContain('sandbox/sbx-42/MISSING');
  }, 240_000);

  for (const major of [22, 24]) {
    // The entry is CommonJS and the rest ES modules imported from it: both halves, on each supported major.
    it(`runs the installed coffer on Node ${major}: run by its fast path, ls by the full CLI, a refused token`, async (ctx) => {
      const node = registryNode(major);
      if ('reason' in node) return ctx.skip(node.reason);
      const configDir = path.join(tmp, `config-node${major}`);
      mkdirSync(configDir, { mode: 0o700 });
      // What `coffer login` caches, written directly (login itself is tested above).
      const cache = (accessToken: string) =>
        writeFileSync(
          path.join(configDir, 'credentials.json'),
          JSON.stringify({ url, clientId: tenant.admin.clientId, accessToken, expiresAt: Date.now() + 600_000 }),
          { mode: 0o600 },
        );
      cache(tenant.adminToken);
      const entry = path.join(project, 'node_modules/@coffer/cli/dist/coffer.cjs');
      const o = { cwd: project, env: { ...env, COFFER_CONFIG_DIR: configDir } };
      const injected = await run(
        node.bin,
        [
          entry,
          'run',
          '--bundle',
          'sandbox/sbx-42',
          '--',
          node.bin,
          '-e',
          'console.log(process.env.SESSION_KEY.length)',
        ],
        o,
      );
      expect(injected.stderr).toBe('');
      expect(injected.stdout).toBe('64\n');
      const listed = await run(node.bin, [entry, 'ls', 'sandbox/sbx-42'], o);
      expect(listed.code, listed.stderr).toBe(0);
      expect(listed.stdout).toContain('SESSION_KEY');
      // A token the server refuses, with nothing to renew it: the fast path reports the SDK's error (the other half).
      cache('not-a-token');
      const refused = await run(node.bin, [entry, 'run', '--bundle', 'sandbox/sbx-42', '--', 'true'], o);
      expect(refused.stderr).toMatch(/^coffer: .+ \(unauthorized, request cli-[0-9a-f]{8}-1\)\n$/);
      expect(refused.code).toBe(4);
    }, 240_000);
  }
});
