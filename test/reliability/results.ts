import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../support/build.ts';

/** Each fault test records what it measured; the README table "What Coffer survives" is written from these. */
export function recordOutcome(fault: string, outcome: Record<string, unknown>): void {
  const dir = path.join(repoRoot, 'test/reliability/results');
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'latest.json');
  let all: Record<string, unknown> = {};
  try {
    all = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch {
    // first result of this run
  }
  all[fault] = { ...outcome, at: new Date().toISOString() };
  writeFileSync(file, `${JSON.stringify(all, null, 2)}\n`);
}
