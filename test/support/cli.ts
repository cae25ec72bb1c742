import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { inject } from 'vitest';
import { cliEntry, repoRoot } from './build.ts';
import { createTenant, login, type TestTenant } from './factories.ts';
import type { TestApp } from './test-app.ts';

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliRunOptions {
  env?: Record<string, string | undefined>;
  input?: string;
  cwd?: string;
  timeoutMs?: number;
}

/**
 * The environment a user's shell would give the CLI: no inherited COFFER_* or colour settings from the test runner,
 * and no NODE_EXTRA_CA_CERTS, which some machines point at the whole system bundle: Node 20 parses it at every
 * start, a cost every one of the suite's CLI processes would pay for TLS it never uses (a test that needs it passes
 * it in `extra`).
 */
const NOT_INHERITED = new Set(['NO_COLOR', 'FORCE_COLOR', 'NODE_EXTRA_CA_CERTS']);
export function baseEnv(extra: Record<string, string | undefined> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.startsWith('COFFER_') && !NOT_INHERITED.has(k)) env[k] = v;
  }
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = v;
  return env;
}

/** Runs the built `coffer` as a subprocess: `node apps/cli/dist/coffer.cjs …args`. */
export function runCli(args: string[], o: CliRunOptions = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliEntry, ...args], {
      cwd: o.cwd ?? repoRoot,
      env: baseEnv(o.env),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 20_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    child.stdin.end(o.input ?? '');
  });
}

/** Starts the CLI and hands back the process, for tests that talk to it while it runs (signals, --follow). */
export function spawnCli(args: string[], o: CliRunOptions = {}) {
  const child = spawn(process.execPath, [cliEntry, ...args], {
    cwd: o.cwd ?? repoRoot,
    env: baseEnv(o.env),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const output = { stdout: '', stderr: '' };
  child.stdout.setEncoding('utf8').on('data', (d: string) => (output.stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (output.stderr += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal })),
  );
  /** Resolves once stdout contains the text (or rejects after the timeout). */
  const waitFor = async (text: string, timeoutMs = 15_000) => {
    const until = Date.now() + timeoutMs;
    while (!output.stdout.includes(text)) {
      if (Date.now() > until)
        throw new Error(
          `timed out waiting for ${JSON.stringify(text)}; stdout: ${output.stdout}; stderr: ${output.stderr}`,
        );
      await new Promise((r) => setTimeout(r, 25));
    }
  };
  return { child, output, exited, waitFor };
}

/** A fresh tenant for one test, its admin's credentials and a private config dir, ready to pass to the CLI. */
export interface CliTenant extends TestTenant {
  url: string;
  configDir: string;
  /** COFFER_URL and COFFER_CONFIG_DIR, whose credentials file holds the admin's token (as after `coffer login`). */
  env: Record<string, string>;
  /** COFFER_URL, COFFER_CONFIG_DIR and the admin's COFFER_CLIENT_ID / COFFER_CLIENT_SECRET (as in CI). */
  credentialsEnv: Record<string, string>;
  cleanup(): void;
}

export async function cliTenant(t: TestApp, url: string): Promise<CliTenant> {
  const tenant = await createTenant(t.app);
  const configDir = mkdtempSync(path.join(os.tmpdir(), 'coffer-cli-'));
  // What `coffer login` leaves behind, written directly so each test does not pay for another slow-hash login.
  writeFileSync(
    path.join(configDir, 'credentials.json'),
    JSON.stringify({
      url,
      clientId: tenant.admin.clientId,
      accessToken: tenant.adminToken,
      expiresAt: Date.now() + 600_000,
    }),
    { mode: 0o600 },
  );
  // A session's secrets go to the 0600 file here, whatever keychain the machine running the tests has.
  const env = { COFFER_URL: url, COFFER_CONFIG_DIR: configDir, COFFER_CREDENTIAL_STORE: 'file' };
  return {
    ...tenant,
    url,
    configDir,
    env,
    credentialsEnv: {
      ...env,
      COFFER_CLIENT_ID: tenant.admin.clientId,
      COFFER_CLIENT_SECRET: tenant.admin.clientSecret,
    },
    cleanup: () => rmSync(configDir, { recursive: true, force: true }),
  };
}

export const rootSecret = () => inject('rootSecret');
export { login };
