import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const apiEntry = path.join(repoRoot, 'apps/api/dist/main.js');

/** Builds the API bundle that process-level tests run, exactly as `npm start` does. */
export async function buildApi(): Promise<void> {
  execFileSync(process.execPath, ['build.mjs'], { cwd: path.join(repoRoot, 'apps/api'), stdio: 'inherit' });
}
