// Bundles the API into dist/main.js: workspace packages (consumed as TypeScript source) are compiled in,
// npm dependencies stay external and load from node_modules.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = fileURLToPath(new URL('.', import.meta.url));
const dependenciesOf = (relative) => {
  const pkg = JSON.parse(readFileSync(new URL(relative, import.meta.url), 'utf8'));
  return [...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.optionalDependencies ?? {})];
};
const external = [
  ...dependenciesOf('./package.json'),
  ...dependenciesOf('../../packages/contracts/package.json'),
].filter((d) => !d.startsWith('@coffer/'));

await build({
  absWorkingDir: here,
  entryPoints: ['src/main.ts'],
  outfile: 'dist/main.js',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: true,
  external: [...external, 'pino-pretty'],
  // the workspace packages' TypeScript source, not their published build (which may not exist in a checkout)
  conditions: ['@coffer/source'],
  logLevel: 'warning',
});
