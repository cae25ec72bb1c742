import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ENV_VARIABLES, loadConfig } from '../../apps/api/src/config.ts';
import { repoRoot } from '../support/build.ts';

const lines = readFileSync(path.join(repoRoot, '.env.example'), 'utf8').split('\n');
const listed = lines.filter((l) => /^[A-Z_]+=/.test(l)).map((l) => l.split('=')[0]);

describe('.env.example', () => {
  it('lists every variable the configuration reads', () => {
    expect(ENV_VARIABLES.filter((v) => !listed.includes(v))).toEqual([]);
  });

  it('holds no values', () => {
    expect(lines.filter((l) => /^[A-Z_]+=./.test(l))).toEqual([]);
  });

  it('loads as it is: every line as an environment gives zero problems (an empty value is unset)', () => {
    const env = Object.fromEntries(lines.filter((l) => /^[A-Z_]+=/.test(l)).map((l) => l.split('=', 2)));
    expect(Object.keys(env).length).toBeGreaterThan(ENV_VARIABLES.length);
    const r = loadConfig(env);
    expect(r.ok ? [] : r.problems).toEqual([]);
  });

  it('gives docker compose its POSTGRES_PASSWORD', () => {
    expect(listed).toContain('POSTGRES_PASSWORD');
  });
});

describe('docs/configuration.md', () => {
  const doc = readFileSync(path.join(repoRoot, 'docs', 'configuration.md'), 'utf8');
  const rows = doc.split('\n').filter((l) => l.startsWith('| `'));

  it('has a row for every variable the configuration reads, with its meaning, default and example', () => {
    expect(ENV_VARIABLES.filter((v) => !rows.some((r) => r.startsWith(`| \`${v}\` |`)))).toEqual([]);
  });

  it('documents nothing the configuration does not read, except the variables it says are not read by Coffer', () => {
    const documented = rows.map((r) => /^\| `([A-Z_]+)`/.exec(r)?.[1]);
    const notCoffer = ['POSTGRES_PASSWORD', 'TEST_DATABASE_URL', 'TEST_TARGET_DATABASE_URL', 'BENCH_DATABASE_URL'];
    expect(documented.filter((v) => v && !ENV_VARIABLES.includes(v) && !notCoffer.includes(v))).toEqual([]);
  });

  it('lists the same variables as .env.example', () => {
    const documented = rows.map((r) => /^\| `([A-Z_]+)`/.exec(r)?.[1]);
    expect([...new Set(documented)].sort()).toEqual([...listed].sort());
  });
});
