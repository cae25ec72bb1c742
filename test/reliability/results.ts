import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../support/build.ts';

/**
 * Where this run's measurements go. The tracked `latest.json` (the source of docs/reliability.md's table) changes
 * only when someone asks for it with RELIABILITY_RECORD=1, so that `npm test` leaves the checkout as it found it.
 */
export function resultsFile(record = process.env.RELIABILITY_RECORD === '1'): string {
  return path.join(repoRoot, 'test/reliability/results', record ? 'latest.json' : 'last-run.json');
}

/** Each fault test records what it measured. */
export function recordOutcome(fault: string, outcome: Record<string, unknown>): void {
  const file = resultsFile();
  mkdirSync(path.dirname(file), { recursive: true });
  let all: Record<string, unknown> = {};
  try {
    all = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch {
    // first result of this run
  }
  all[fault] = { ...outcome, at: new Date().toISOString() };
  writeFileSync(file, `${JSON.stringify(all, null, 2)}\n`);
}
