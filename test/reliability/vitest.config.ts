import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * The reliability suite: each test starts its own PostgreSQL and API processes and breaks them on purpose.
 * Files run one at a time (they are CPU- and timing-sensitive); each case stays under 60 s.
 */ const SOURCE_FIRST = ['@coffer/source', 'node', 'development|production'];

export default defineConfig({
  root,
  // Workspace packages are consumed as TypeScript source (their `@coffer/source` export), never their dist/.
  // (then what Node itself matches). The global setup runs in vitest's own `__vitest__` environment.
  resolve: { conditions: SOURCE_FIRST },
  ssr: { resolve: { conditions: SOURCE_FIRST } },
  environments: { __vitest__: { resolve: { conditions: SOURCE_FIRST } } },
  test: {
    include: ['test/reliability/**/*.test.ts'],
    globalSetup: ['test/reliability/global-setup.ts'],
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default'],
  },
});
