import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { cliEntry } from '../support/build.ts';
import { baseEnv, cliTenant } from '../support/cli.ts';
import { readmeBlocks } from '../support/readme.ts';
import { createTestApp, type TestApp } from '../support/test-app.ts';

let t: TestApp;
let url: string;
beforeAll(async () => {
  t = await createTestApp();
  url = await t.app.listen({ host: '127.0.0.1', port: 0 });
});
afterAll(() => t.close());

function bash(
  script: string,
  cwd: string,
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      'bash',
      ['--norc', '--noprofile', '-euo', 'pipefail', '-c', script],
      { cwd, env, timeout: 60_000 },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe('apps/cli/README.md', () => {
  it('runs every marked example, in order, against a real server', async () => {
    const blocks = readmeBlocks('apps/cli/README.md');
    expect(blocks.map((b) => b.directive)).toEqual(
      expect.arrayContaining(['run', 'workflow', 'file deploy/secrets.yaml']),
    );

    const c = await cliTenant(t, url);
    const work = mkdtempSync(path.join(os.tmpdir(), 'coffer-readme-'));
    const bin = path.join(work, '.bin');
    mkdirSync(bin);
    writeFileSync(path.join(bin, 'coffer'), `#!/bin/sh\nexec "${process.execPath}" "${cliEntry}" "$@"\n`);
    chmodSync(path.join(bin, 'coffer'), 0o755);
    const env = baseEnv({ ...c.credentialsEnv, PATH: `${bin}:${process.env.PATH ?? ''}`, HOME: work });

    let stdout = '';
    for (const block of blocks) {
      const where = `README line ${block.line} (${block.directive})`;
      if (block.directive.startsWith('file ')) {
        const file = path.join(work, block.directive.slice(5));
        mkdirSync(path.dirname(file), { recursive: true });
        writeFileSync(file, `${block.code}\n`);
        continue;
      }
      const scripts =
        block.directive === 'workflow'
          ? (YAML.parse(block.code) as { run?: string }[])
              .map((step) => step.run)
              .filter((r): r is string => Boolean(r))
          : [block.code];
      expect(scripts.length, where).toBeGreaterThan(0);
      for (const script of scripts) {
        const r = await bash(script, work, env);
        expect(r.code, `${where}\n${r.stderr}`).toBe(0);
        stdout += r.stdout;
      }
    }
    // What the examples promise, seen in their output.
    expect(stdout).toContain('postgres://app@db.internal:5432/app');
    expect(stdout).toContain('db host: db.internal:5432');
    expect(stdout).toContain('+ MOTD  (new)');
    expect(stdout).toMatch(/^GREETING$/m);
    expect(stdout).toContain('✓ sandbox/sbx-42/DATABASE_URL  ok (version 1)');
    expect(stdout).toMatch(/sandbox\/sbx-42\/DATABASE_URL\s+infrastructure\s+strip/);
    expect(stdout).toContain('sandbox/sbx-42/API_TOKEN inject');
    expect(stdout).toMatch(/^ok: \d+ events/m);
    rmSync(work, { recursive: true, force: true });
    c.cleanup();
  });
});
