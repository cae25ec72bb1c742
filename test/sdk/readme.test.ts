import { execFile } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CofferClient } from '@coffer/sdk';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../support/build.ts';
import { baseEnv } from '../support/cli.ts';
import { docBlocks } from '../support/doc-blocks.ts';
import { createTenant } from '../support/factories.ts';
import { listeningSuite } from '../support/suite.ts';
import type { TestApp } from '../support/test-app.ts';

let t: TestApp;
let url: string;
listeningSuite((s) => {
  ({ t, url } = s);
});

/**
 * Runs a README example as `node service.mjs`, from a folder that resolves @coffer/sdk to its workspace source (tsx
 * compiles it; test/packages/pack-install.test.ts runs the same examples on the built package with plain node).
 */
function runExample(
  code: string,
  n: number,
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const dir = path.join(repoRoot, 'node_modules', '.cache', 'readme-tests');
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `sdk-example-${process.pid}-${n}.mjs`);
  writeFileSync(file, code);
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--conditions=@coffer/source', '--import', 'tsx', file],
      { cwd: repoRoot, env, timeout: 60_000 },
      (err, stdout, stderr) => {
        rmSync(file, { force: true });
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}

describe('packages/sdk/README.md', () => {
  it('runs the start-up and cache examples against a real server', async () => {
    const tenant = await createTenant(t.app);
    const admin = new CofferClient({ baseUrl: url, ...tenant.admin });
    await admin.putSecret('sandbox/sbx-42/DATABASE_URL', 'postgres://app:pw@db:5432/app');
    await admin.putSecret('sandbox/sbx-42/SESSION_KEY', 'a'.repeat(64));
    const env = baseEnv({
      COFFER_URL: url,
      COFFER_CLIENT_ID: tenant.admin.clientId,
      COFFER_CLIENT_SECRET: tenant.admin.clientSecret,
    });

    const blocks = docBlocks('packages/sdk/README.md').filter((b) => b.directive === 'node');
    expect(blocks).toHaveLength(2);
    const [startup, cache] = blocks;
    expect(startup?.code.split('\n').length).toBeLessThanOrEqual(10);

    const first = await runExample(startup?.code ?? '', 0, env);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toBe('loaded 2 secrets for sandbox/sbx-42\n');

    const second = await runExample(cache?.code ?? '', 1, env);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toBe([0, 1, 2].map((n) => `request ${n}: signing with version 1 (64 characters)\n`).join(''));
    // Three reads, one HTTP read: the cache answered the other two (the audit log counts the reads).
    const reads = await admin.call('queryAudit', {
      query: { action: 'secrets.read', path: 'sandbox/sbx-42/SESSION_KEY' },
    });
    expect(reads.items).toHaveLength(1);

    await admin.deleteSecret('sandbox/sbx-42/DATABASE_URL');
    const missing = await runExample(startup?.code ?? '', 2, env);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain('sandbox/sbx-42/DATABASE_URL is missing');
  });
});
