import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const apiEntry = path.join(repoRoot, 'apps/api/dist/main.js');
export const cliEntry = path.join(repoRoot, 'apps/cli/dist/coffer.cjs');

/** Builds the API bundle that process-level tests run, exactly as `npm start` does. */
export async function buildApi(): Promise<void> {
  execFileSync(process.execPath, ['build.mjs'], { cwd: path.join(repoRoot, 'apps/api'), stdio: 'inherit' });
}

/** Builds the `coffer` CLI bundle that end-to-end tests run as a subprocess, exactly as `npm run build` does. */
export async function buildCli(): Promise<void> {
  execFileSync(process.execPath, ['build.mjs'], { cwd: path.join(repoRoot, 'apps/cli'), stdio: 'inherit' });
}
