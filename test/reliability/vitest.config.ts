import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * The reliability suite: each test starts its own PostgreSQL and API processes and breaks them on purpose.
 * Files run one at a time (they are CPU- and timing-sensitive); each case stays under 60 s.
 */
export default defineConfig({
  root,
  test: {
    include: ['test/reliability/**/*.test.ts'],
    globalSetup: ['test/reliability/global-setup.ts'],
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default'],
  },
});
