import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/** Recorded by test/support/record-durations.ts: file → milliseconds. */
export const durationsFile = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'durations.json');

/**
 * Longest files first, so that no worker is left alone with a long file at the end of the run while the others
 * idle. vitest's own sequencer sorts by the durations it cached from the previous run, but a clean clone (CI) has
 * no cache, and it then sorts by file size, which says little about how long a file takes. Durations come from
 * test/durations.json, then from vitest's cache; a file known to neither runs first, as it may be a long one.
 * The order changes only how fast the run ends, never what it runs.
 */
export class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    let recorded: Record<string, number> = {};
    try {
      recorded = JSON.parse(readFileSync(durationsFile, 'utf8')) as Record<string, number>;
    } catch {
      // no recorded durations: vitest's cache, else file order
    }
    const root = this.ctx.config.root;
    const expected = (spec: TestSpecification) => {
      const file = path.relative(root, spec.moduleId).split(path.sep).join('/');
      return (
        recorded[file] ??
        this.ctx.cache.getFileTestResults(`${spec.project.name}:${file}`)?.duration ??
        Number.POSITIVE_INFINITY
      );
    };
    const keyed = files.map((spec) => ({ spec, ms: expected(spec) }));
    // Compared, not subtracted: two unknown files are both infinite.
    keyed.sort((a, b) => (a.ms === b.ms ? 0 : a.ms > b.ms ? -1 : 1));
    return keyed.map((k) => k.spec);
  }
}
