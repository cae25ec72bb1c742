// Builds one publishable package (run from its folder by `npm run build` and `npm pack`'s prepack):
//   dist/<entry>.js (ESM) and dist/<entry>.cjs (CommonJS) for each entry of the exports map, with source maps; npm dependencies stay
//   external, so zod and @coffer/contracts are shared with the consumer's copies;
//   dist/*.d.ts (+ .d.ts.map) from tsc, and dist/<entry>.d.cts for `require`.
// Inside the monorepo nothing needs this: the `@coffer/source` export condition serves src/ to tsc, vitest and tsx.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { build } from 'esbuild';

const dir = process.cwd();
const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'));
const external = [...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.peerDependencies ?? {})];
const out = path.join(dir, 'dist');

mkdirSync(out, { recursive: true });
for (const f of readdirSync(out, { withFileTypes: true }).filter((e) => e.isFile())) rmSync(path.join(out, f.name));

const common = {
  absWorkingDir: dir,
  entryPoints: Object.keys(pkg.exports)
    .filter((k) => k !== './package.json')
    .map((k) => `src/${k === '.' ? 'index' : k.slice(2)}.ts`),
  outdir: 'dist',
  bundle: true,
  platform: 'neutral',
  target: 'es2022',
  sourcemap: true,
  external: [...external, 'node:*'],
  // the package's own `@coffer/source` condition must not leak into what consumers get
  conditions: ['import', 'default'],
  logLevel: 'warning',
};
await build({ ...common, format: 'esm' });
await build({ ...common, format: 'cjs', outExtension: { '.js': '.cjs' }, mainFields: ['main'] });

// Declarations: the referenced projects first (tsc -b), then this package's own into dist/.
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
execFileSync(process.execPath, [tsc, '-b', 'tsconfig.json'], { cwd: dir, stdio: 'inherit' });
execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: dir, stdio: 'inherit' });
// The sources import './x.ts' (allowImportingTsExtensions); a consumer's compiler resolves the shipped './x.js'.
for (const f of readdirSync(out).filter((n) => n.endsWith('.d.ts'))) {
  const file = path.join(out, f);
  writeFileSync(file, readFileSync(file, 'utf8').replace(/(from\s+'\.{1,2}\/[^']+)\.ts'/g, "$1.js'"));
}
// `require` gets the same types: TypeScript 5.8+ lets a CommonJS file re-export an ES module's declarations.
for (const entry of common.entryPoints) {
  const name = path.basename(entry, '.ts');
  writeFileSync(path.join(out, `${name}.d.cts`), `export * from './${name}.js';\n`);
}
