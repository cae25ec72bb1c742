import { type ChildProcess, spawn } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../support/build.ts';
import { docBlocks, isShell, runShellDocument, shellSyntaxProblem } from '../support/doc-blocks.ts';
import { freePort } from '../support/server-process.ts';

/**
 * The README and every page of docs/, run as a user pastes them (docs/testing.md gives the rule): every ```sh and
 * ```bash block runs, one bash process per document, against a server started the way `npm start` starts it.
 */
const documents = ['README.md', ...readdirSync(path.join(repoRoot, 'docs')).map((f) => `docs/${f}`)].filter((f) =>
  f.endsWith('.md'),
);

/**
 * The blocks that cannot run here, by document and first line: each must carry a `not-run` marker saying why, and
 * a new one must be added here on purpose.
 */
const NOT_RUN = [
  'README.md: npm install && npm start',
  'docs/kubernetes.md: docker build -f apps/api/Dockerfile -t registry.example.com/platform/coffer-api:0.1.0 .',
  'docs/kubernetes.md: mkdir -p coffer-secrets && chmod 700 coffer-secrets && cd coffer-secrets',
  'docs/kubernetes.md: kubectl apply -f apps/api/deploy/namespace.yaml',
  'docs/kubernetes.md: kubectl apply -k apps/api/deploy/overlays/production',
  'docs/kubernetes.md: kubectl -n coffer port-forward service/coffer-api 8443:443 &',
  'docs/operations.md: docker compose up --build',
  'docs/operations.md: echo "COFFER_APP_ROLE_PASSWORD=$(openssl rand -hex 24)" >> .env',
  'docs/operations.md: kubectl apply -k apps/api/deploy',
  'docs/performance.md: npm run bench',
];

/** What the server writes into the checkout it runs in; the rest of the temporary checkout is the repository's. */
function temporaryCheckout(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'coffer-docs-'));
  chmodSync(dir, 0o755);
  for (const entry of readdirSync(repoRoot)) {
    if (['.git', '.coffer', '.env', '.secrets', 'apps'].includes(entry)) continue;
    symlinkSync(path.join(repoRoot, entry), path.join(dir, entry));
  }
  // A copy, so that the documents' `npm run build` writes its own dist/ and never the one other tests are running.
  cpSync(path.join(repoRoot, 'apps'), path.join(dir, 'apps'), {
    recursive: true,
    filter: (src) => path.basename(src) !== 'node_modules',
  });
  for (const app of readdirSync(path.join(repoRoot, 'apps'))) {
    const modules = path.join(repoRoot, 'apps', app, 'node_modules');
    if (existsSync(modules)) symlinkSync(modules, path.join(dir, 'apps', app, 'node_modules'));
  }
  mkdirSync(path.join(dir, 'home'));
  return dir;
}

/** The node command of `npm start`, without its build step: the global setup has built dist/ already. */
function startCommand(): string {
  const pkg = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { scripts: { start: string } };
  const last = pkg.scripts.start.split('&&').pop()?.trim();
  if (!last?.startsWith('node ')) throw new Error(`npm start no longer ends with a node command: ${pkg.scripts.start}`);
  return last;
}

let work: string;
let port: number;
let pgPort: number;
let server: ChildProcess;
let serverLog = '';
let env: Record<string, string>;

beforeAll(async () => {
  work = temporaryCheckout();
  port = await freePort();
  pgPort = await freePort();
  const home = path.join(work, 'home');
  const prefix = path.join(work, '.npm-global');
  // A user's shell: no test variables (NODE_ENV=test above all), a home and a global npm prefix of its own.
  env = {
    PATH: `${path.join(prefix, 'bin')}:${process.env.PATH ?? '/usr/bin:/bin'}`,
    HOME: home,
    LANG: 'C.UTF-8',
    npm_config_prefix: prefix,
    npm_config_update_notifier: 'false',
    // `coffer login` keeps its session in the 0600 file here, never in the keychain of whoever runs the tests.
    COFFER_CREDENTIAL_STORE: 'file',
  };
  server = spawn('bash', ['-c', `exec ${startCommand()}`], {
    cwd: work,
    env: { ...env, PORT: String(port), COFFER_EMBEDDED_PG_PORT: String(pgPort) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  server.stdout?.on('data', (d: Buffer) => {
    serverLog += d.toString();
  });
  server.stderr?.on('data', (d: Buffer) => {
    serverLog += d.toString();
  });
  const deadline = Date.now() + 90_000;
  for (;;) {
    if (server.exitCode !== null) throw new Error(`the server exited with ${server.exitCode}:\n${serverLog}`);
    const ready = await fetch(`http://127.0.0.1:${port}/readyz`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ready) break;
    if (Date.now() > deadline) throw new Error(`the server was not ready within 90 s:\n${serverLog}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}, 120_000);

afterAll(async () => {
  if (server && server.exitCode === null) {
    const exited = new Promise((r) => server.once('exit', r));
    server.kill('SIGTERM');
    await exited;
  }
  if (work) rmSync(work, { recursive: true, force: true });
}, 30_000);

/**
 * The one change made to what a user pastes: the ports of `npm start` (the API's 7400, and 7432 of its embedded
 * PostgreSQL, which docs/dynamic-credentials.md connects to) become the ones this server took.
 */
const onTestPort = (code: string) =>
  code
    .replace(/\b(localhost|127\.0\.0\.1):7400\b/g, `$1:${port}`)
    .replace(/\b(localhost|127\.0\.0\.1):7432\b/g, `$1:${pgPort}`);

describe('every shell block of the README and docs/, run as pasted', () => {
  it('keeps the README short: at most 12 000 bytes, the rest in docs/', () => {
    expect(readFileSync(path.join(repoRoot, 'README.md')).byteLength).toBeLessThanOrEqual(12_000);
  });

  it('marks exactly the listed blocks not-run, each with a reason, and each parses as shell', async () => {
    const marked = documents.flatMap((file) =>
      docBlocks(file)
        .filter((b) => b.directive !== undefined)
        .map((b) => ({ file, b })),
    );
    for (const { file, b } of marked) {
      expect(b.directive, `${file}:${b.line}`).toMatch(/^not-run: \S.{10,}/);
      expect(isShell(b), `${file}:${b.line}: only shell blocks are run, so only they can be not-run`).toBe(true);
      expect(await shellSyntaxProblem(b.code), `${file}:${b.line}`).toBeNull();
    }
    expect(marked.map(({ file, b }) => `${file}: ${b.code.split('\n')[0]?.split(' #')[0]?.trim()}`)).toEqual(NOT_RUN);
  });

  // Long: the README builds and installs the CLI as a user would.
  it.each(documents)(
    '%s',
    async (file) => {
      const blocks = docBlocks(file).filter((b) => isShell(b) && b.directive === undefined);
      const run = await runShellDocument(
        file,
        blocks.map((b) => ({ code: onTestPort(b.code), line: b.line })),
        { cwd: work, env, timeoutMs: 170_000 },
      );
      const output = run.stdout + run.stderr;
      expect(run.code, `${run.failedAt ?? file} failed:\n${output}\nserver log:\n${serverLog.slice(-3000)}`).toBe(0);
      expect(output, `${file}: an API error in the output`).not.toMatch(/"error"\s*:\s*\{/);
      if (file === 'README.md') {
        // The walkthrough's promises: the service reads what the admin wrote, and the CLI injects it.
        expect(output).toMatch(/^postgres:\/\/app:pw@db\.internal:5432\/app$/m);
        expect(output).toContain('db host: db.internal:5432');
      }
      if (file === 'docs/secrets.md') expect(output).toMatch(/^409\n/m);
      if (file === 'docs/intake.md') {
        // Refused for its format, stored once, then spent; a link made before a change stores nothing.
        expect(output.match(/^(422|410|409)$/gm)).toEqual(['422', '410', '409']);
        expect(output).toContain('{"value":"sk_test_0123456789abcdefXYZ","version":1}');
        expect(output).toMatch(/^ghp_0123456789abcdefghij$/m);
        expect(output).toMatch(/^revoked shared\/payments\/WEBHOOK_SECRET$/m);
      }
      if (file === 'docs/deployments.md') {
        // Fresh for each deployment, its exact record, revocation refused then allowed, the revoked version gone.
        expect(output).toContain('fresh for each');
        expect(output).toMatch(/^FEATURE_FLAGS SESSION_KEY$/m);
        expect(output).toMatch(/^sandbox\/app\/SESSION_KEY@2 run desktop-runner$/m);
        expect(output).toMatch(/^409$/m);
        expect(output).toMatch(/^410$/m);
        expect(output).toContain('"rotated":[{"path":"sandbox/app/SESSION_KEY","fromVersion":3,"toVersion":4}]');
      }
      if (file === 'docs/environments.md') {
        // Hidden from the staging service, refused when stale, promoted when current.
        expect(output.match(/^404$/gm)).toHaveLength(2);
        expect(output).toMatch(/^409\n/m);
        expect(output).toContain('{"value":"sk_test_staging_1","version":2}');
      }
      if (file === 'docs/dynamic-credentials.md') {
        // The lease logged in as its own role, and could not once revoked; one revocation in the audit log.
        expect(output).toMatch(/^v_orders-db_orders-api_[a-z0-9]{12}$/m);
        expect(output).toMatch(/^the role is gone$/m);
        expect(output).toMatch(/^leases\.revoke allowed$/m);
      }
    },
    180_000,
  );
});
