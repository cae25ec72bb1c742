// Bundles the CLI into dist/, self-contained (the workspace packages and every npm dependency compiled in), so the
// package installs from its tarball with no dependencies and no checkout. Two bundles:
// - coffer.cjs, the entry (src/main.ts and what it imports): all that `coffer run` with a cached token needs
//   (src/fast-run.ts). CommonJS, in one small file: Node's ES module loader, and the facades it builds for the
//   built-in modules, cost `coffer run` about as much again as its own code does.
// - cli.js and its chunks (src/cli.ts): commander, the commands, the SDK, zod and yaml, as ES modules split so that
//   each loads when a command needs it (Node parses a whole file before its first line runs). The entry imports it
//   only when the fast path does not apply.
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = fileURLToPath(new URL('.', import.meta.url));
const dist = path.join(here, 'dist');
// Everything but dist/types (tsc's), so a renamed file cannot linger into the package.
mkdirSync(dist, { recursive: true });
for (const e of readdirSync(dist, { withFileTypes: true }).filter((f) => f.name !== 'types')) {
  rmSync(path.join(dist, e.name), { recursive: true, force: true });
}

const common = {
  absWorkingDir: here,
  outdir: 'dist',
  bundle: true,
  platform: 'node',
  target: 'node20',
  minify: true,
  sourcemap: true,
  // the workspace packages' TypeScript source, not their published build (which may not exist in a checkout)
  conditions: ['@coffer/source'],
  logLevel: 'warning',
};

await build({
  ...common,
  entryPoints: { cli: 'src/cli.ts' },
  chunkNames: 'chunks/[name]-[hash]',
  splitting: true,
  format: 'esm',
  banner: {
    // commander is CommonJS and requires Node's built-ins, which an ES module can only do through this
    js: "import { createRequire as __cofferRequire } from 'node:module'; const require = __cofferRequire(import.meta.url);",
  },
});

await build({
  ...common,
  entryPoints: { coffer: 'src/main.ts' },
  outExtension: { '.js': '.cjs' },
  format: 'cjs',
  // createRequire(import.meta.url) in fast-run.ts: a CommonJS file's own path serves as well
  define: { 'import.meta.url': '__filename' },
  plugins: [
    {
      // The full CLI stays the other bundle, imported as an ES module when needed, never compiled into this one.
      name: 'full-cli-external',
      setup(b) {
        b.onResolve({ filter: /^\.\/cli\.ts$/ }, () => ({ path: './cli.js', external: true }));
      },
    },
  ],
});
