// Bundles the CLI into dist/: coffer.js and the chunks it imports, self-contained (the workspace packages and every
// npm dependency compiled in), so the package installs from its tarball with no dependencies and no checkout.
// Split, not one file: `coffer run` with a cached token needs only the entry (src/fast-run.ts); the chunks with
// commander, the commands, the SDK, zod and yaml load when a command needs them. In one file, Node parses all of
// it before the first line runs, which costs `coffer run` a third of its start-up on Node 20.
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = fileURLToPath(new URL('.', import.meta.url));
rmSync(new URL('./dist/chunks', import.meta.url), { recursive: true, force: true });

await build({
  absWorkingDir: here,
  entryPoints: { coffer: 'src/main.ts' },
  outdir: 'dist',
  chunkNames: 'chunks/[name]-[hash]',
  bundle: true,
  splitting: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  minify: true,
  sourcemap: true,
  // the workspace packages' TypeScript source, not their published build (which may not exist in a checkout)
  conditions: ['@coffer/source'],
  banner: {
    // commander is CommonJS and requires Node's built-ins, which an ES module can only do through this
    js: "import { createRequire as __cofferRequire } from 'node:module'; const require = __cofferRequire(import.meta.url);",
  },
  logLevel: 'warning',
});
