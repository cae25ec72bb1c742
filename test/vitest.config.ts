import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';
import { LongestFirst } from './support/sequencer.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SOURCE_FIRST = ['@coffer/source', 'node', 'development|production'];

export default defineConfig({
  root,
  // Workspace packages are consumed as TypeScript source (their `@coffer/source` export), never their dist/.
  // (then what Node itself matches). The global setup runs in vitest's own `__vitest__` environment.
  resolve: { conditions: SOURCE_FIRST },
  ssr: { resolve: { conditions: SOURCE_FIRST } },
  environments: { __vitest__: { resolve: { conditions: SOURCE_FIRST } } },
  test: {
    include: ['test/**/*.test.ts', 'apps/*/src/**/*.test.ts', 'packages/*/src/**/*.test.ts'],
    exclude: ['**/node_modules/**', '**/dist/**', 'test/bench/**', 'test/reliability/**'],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 120_000,
    // vitest's default, one worker fewer than the cores, leaves a 2-core machine with a single worker, idle while
    // its file waits on PostgreSQL and on child processes.
    maxWorkers: Math.max(2, os.availableParallelism() - 1),
    sequence: { sequencer: LongestFirst },
    // Files share their worker's process (and the modules it has loaded) instead of a new process each: every file
    // makes its own app, tenants and connections and closes them, so none relies on a fresh process, and a new
    // process per file reloaded fastify, zod, drizzle and the app's modules every time. `--isolate` gives each file
    // its own process again, to rule a neighbour out when a failure only shows in the full run.
    isolate: false,
    reporters: ['default'],
  },
});
