import { readdirSync, readFileSync } from 'node:fs';
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

describe('the documentation', () => {
  const docs = ['README.md', ...readdirSync(path.join(repoRoot, 'docs')).map((f) => `docs/${f}`)]
    .filter((f) => f.endsWith('.md'))
    .map((f) => readFileSync(path.join(repoRoot, f), 'utf8'))
    .join('\n');
  it('documents every variable the configuration reads', () => {
    expect(ENV_VARIABLES.filter((v) => !docs.includes(`\`${v}\``))).toEqual([]);
  });
});
