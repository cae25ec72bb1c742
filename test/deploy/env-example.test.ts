import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ENV_VARIABLES } from '../../apps/api/src/config.ts';
import { repoRoot } from '../support/build.ts';

describe('.env.example', () => {
  const lines = readFileSync(path.join(repoRoot, '.env.example'), 'utf8').split('\n');
  const listed = lines.filter((l) => /^[A-Z_]+=/.test(l)).map((l) => l.split('=')[0]);

  it('lists every variable the configuration reads', () => {
    expect(ENV_VARIABLES.filter((v) => !listed.includes(v))).toEqual([]);
  });

  it('holds no values', () => {
    expect(lines.filter((l) => /^[A-Z_]+=./.test(l))).toEqual([]);
  });
});

describe('README configuration table', () => {
  const readme = readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
  it('documents every variable the configuration reads', () => {
    expect(ENV_VARIABLES.filter((v) => !readme.includes(`\`${v}\``))).toEqual([]);
  });
});
