// Writes test/durations.json, the per-file durations the unit suite's sequencer starts the longest files by, from a
// vitest JSON report: `npx vitest run --config test/vitest.config.ts --reporter=json --outputFile=/tmp/run.json`,
// then `npx tsx test/support/record-durations.ts /tmp/run.json`. Only the order matters, so refreshing it after a
// file grows much slower or faster is enough.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from './build.ts';
import { durationsFile } from './sequencer.ts';

const reportPath = process.argv[2];
if (!reportPath) throw new Error('usage: record-durations.ts <vitest JSON report>');
const report = JSON.parse(readFileSync(reportPath, 'utf8')) as {
  testResults: { name: string; startTime: number; endTime: number }[];
};
const durations = Object.fromEntries(
  report.testResults
    .map((f): [string, number] => [
      path.relative(repoRoot, f.name).split(path.sep).join('/'),
      Math.round((f.endTime - f.startTime) / 100) * 100,
    ])
    .sort(([a], [b]) => (a < b ? -1 : 1)),
);
writeFileSync(durationsFile, `${JSON.stringify(durations, null, 2)}\n`);
process.stdout.write(`${Object.keys(durations).length} files\n`);
