import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from './build.ts';
import { docBlocks, runShellDocument, shellSyntaxProblem } from './doc-blocks.ts';

const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };

describe('doc-blocks', () => {
  it('finds fences with their language, marker and first line of code', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'doc-blocks-'));
    const file = path.join(dir, 'x.md');
    writeFileSync(
      file,
      ['# t', '```sh', 'echo a', '```', '<!-- readme-test: not-run: why -->', '```bash', 'b', '```'].join('\n'),
    );
    try {
      const blocks = docBlocks(path.relative(repoRoot, file));
      expect(blocks).toEqual([
        { lang: 'sh', directive: undefined, code: 'echo a', line: 3 },
        { lang: 'bash', directive: 'not-run: why', code: 'b', line: 7 },
      ]);
    } finally {
      rmSync(dir, { recursive: true });
    }
  });

  it('runs the parts in one process, so a variable set by one is seen by the next', async () => {
    const run = await runShellDocument(
      'd.md',
      [
        { code: 'X=42', line: 3 },
        { code: 'echo "x=$X"', line: 9 },
      ],
      {
        cwd: os.tmpdir(),
        env,
      },
    );
    expect(run).toEqual({ code: 0, stdout: 'x=42\n', stderr: '', failedAt: undefined });
  });

  it('stops at the first failing command and names its document line, in a pipeline or a substitution too', async () => {
    const parts = (bad: string) => [
      { code: 'echo one', line: 3 },
      { code: `echo two\n${bad}\necho never`, line: 10 },
    ];
    for (const bad of ['false', 'false | cat', 'X=$(false)', 'curl -sS --fail-with-body http://127.0.0.1:1/']) {
      const run = await runShellDocument('d.md', parts(bad), { cwd: os.tmpdir(), env });
      expect(run.code, bad).not.toBe(0);
      expect(run.failedAt, bad).toBe('d.md:11');
      expect(run.stdout, bad).toBe('one\ntwo\n');
    }
  });

  it('checks syntax without running', async () => {
    expect(await shellSyntaxProblem('rm -rf /nonexistent-coffer-check; echo ok')).toBeNull();
    expect(await shellSyntaxProblem('if then fi (')).toMatch(/syntax error/);
  });
});
