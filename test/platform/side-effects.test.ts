import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { resultsFile } from '../reliability/results.ts';
import { repoRoot } from '../support/build.ts';

/** `npm test` must leave a checkout as it found it, and judge only what is committed. */
describe('npm test side effects', () => {
  it('records reliability results in an ignored file unless asked to update the tracked one', () => {
    const ignored = (file: string) =>
      spawnSync('git', ['check-ignore', '-q', path.relative(repoRoot, file)], { cwd: repoRoot }).status === 0;
    expect(ignored(resultsFile(false))).toBe(true);
    expect(ignored(resultsFile(true))).toBe(false);
  });

  it('installs nothing: no suite runs apt-get', () => {
    const files = execFileSync('git', ['ls-files', 'test'], { cwd: repoRoot, encoding: 'utf8' })
      .split('\n')
      .filter((f) => f.endsWith('.ts'));
    expect(
      files.filter((f) => /(?:spawn|exec)\w*\(\s*['"]apt-get/.test(readFileSync(path.join(repoRoot, f), 'utf8'))),
    ).toEqual([]);
  });

  it('scans only tracked files for secrets, so a response saved in the checkout does not fail it', () => {
    const saved = path.join(repoRoot, `saved-response-${randomBytes(4).toString('hex')}.json`);
    writeFileSync(saved, `{"clientSecret":"coffer_cs_${randomBytes(33).toString('base64url')}"}\n`);
    try {
      const direct = spawnSync('npx', ['secretlint', path.basename(saved)], { cwd: repoRoot, encoding: 'utf8' });
      expect(direct.status, 'secretlint must see the saved secret when asked to scan it').not.toBe(0);
      const scan = spawnSync('npm', ['run', '--silent', 'secrets:scan'], { cwd: repoRoot, encoding: 'utf8' });
      expect(scan.status, scan.stdout + scan.stderr).toBe(0);
    } finally {
      rmSync(saved, { force: true });
    }
  }, 60_000);
});
