// Bundles the API into dist/main.js: workspace packages (consumed as TypeScript source) are compiled in,
// npm dependencies stay external and load from node_modules.
import { readFileSync } from 'node:fs';
import { build } from 'esbuild';

const external = (pkgPath) => Object.keys(JSON.parse(readFileSync(pkgPath, 'utf8')).dependencies ?? {});
const deps = [...external('package.json'), ...external('../../packages/contracts/package.json')].filter(
  (d) => !d.startsWith('@coffer/'),
);

await build({
  entryPoints: ['src/main.ts'],
  outfile: 'dist/main.js',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: true,
  external: [...deps, 'pino-pretty'],
  logLevel: 'warning',
});
