import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { cliEntry } from '../support/build.ts';
import { baseEnv, cliTenant } from '../support/cli.ts';
import { docBlocks, runShellDocument, type ScriptPart } from '../support/doc-blocks.ts';
import { listeningSuite } from '../support/suite.ts';
import type { TestApp } from '../support/test-app.ts';

let t: TestApp;
let url: string;
listeningSuite((s) => {
  ({ t, url } = s);
});

describe('apps/cli/README.md', () => {
  it('runs every marked example, in order, against a real server', async () => {
    const blocks = docBlocks('apps/cli/README.md').filter((b) => b.directive !== undefined);
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

    // The marked blocks in order, as one script in one shell: a `file` block becomes the file it names.
    const parts = blocks.flatMap((block): ScriptPart[] => {
      if (block.directive?.startsWith('file ')) {
        const file = JSON.stringify(block.directive.slice(5));
        const heredoc = `mkdir -p "$(dirname ${file})" && cat > ${file} <<'COFFER_README_EOF'\n${block.code}\nCOFFER_README_EOF`;
        return [{ code: heredoc, line: block.line }];
      }
      if (block.directive === 'workflow')
        return (YAML.parse(block.code) as { run?: string }[])
          .map((step) => step.run)
          .filter((r): r is string => Boolean(r))
          .map((code) => ({ code, line: block.line }));
      return block.directive === 'run' ? [{ code: block.code, line: block.line }] : [];
    });
    const run = await runShellDocument('apps/cli/README.md', parts, { cwd: work, env });
    expect(run.code, `${run.failedAt ?? 'apps/cli/README.md'} failed:\n${run.stdout}${run.stderr}`).toBe(0);
    const stdout = run.stdout;
    // What the examples promise, seen in their output.
    expect(stdout).toContain('postgres://app@db.internal:5432/app');
    expect(stdout).toContain('db host: db.internal:5432');
    expect(stdout).toContain('+ MOTD  (new)');
    expect(stdout).toMatch(/^GREETING$/m);
    expect(stdout).toContain('✓ sandbox/sbx-42/DATABASE_URL  ok (version 1)');
    expect(stdout).toMatch(/sandbox\/sbx-42\/DATABASE_URL\s+infrastructure\s+strip/);
    expect(stdout).toContain('sandbox/sbx-42/API_TOKEN inject');
    // The deployment's own generated value reached the process, and its record says so.
    expect(stdout).toContain('session key: 64 hex characters');
    expect(stdout).toMatch(/sandbox\/sbx-42\/SESSION_KEY@\d+\s+run\s+/);
    expect(stdout).toMatch(/^rotated sandbox\/sbx-42\/SESSION_KEY: /m);
    expect(stdout).toMatch(/^ok: \d+ events/m);
    expect(stdout).toMatch(/^[0-9a-f-]{36}\s+received\s+shared\/payments\/STRIPE_KEY\s+default\s+Stripe secret key/m);
    rmSync(work, { recursive: true, force: true });
    c.cleanup();
  }, 120_000);
});
