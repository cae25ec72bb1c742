import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { CliError } from './output.ts';

/**
 * The token cache: one JSON file, mode 0600 in a 0700 folder, holding the access token for one server and, only
 * when the user asked for it with `coffer login --save-secret`, the client secret that renews it.
 */
export const StoredCredentials = z.object({
  url: z.string(),
  clientId: z.string(),
  accessToken: z.string(),
  /** ms since the epoch */
  expiresAt: z.number(),
  clientSecret: z.string().optional(),
  /**
   * A federated login: where the platform token comes from, never the token itself (the file, or the GitHub Actions
   * runner, is the credential), so the CLI logs in again by itself when the Coffer token expires.
   */
  federation: z
    .object({
      identity: z.string(),
      source: z.union([
        z.object({ file: z.string() }).strict(),
        z.object({ githubActions: z.object({ audience: z.string() }).strict() }).strict(),
      ]),
    })
    .optional(),
});
export type StoredCredentials = z.infer<typeof StoredCredentials>;

export const credentialsFile = (configDir: string) => path.join(configDir, 'credentials.json');

export function readCredentials(configDir: string): StoredCredentials | null {
  const file = credentialsFile(configDir);
  let raw: string;
  try {
    const st = statSync(file);
    if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
      throw new CliError(
        `${file} can be read by other users (mode ${(st.mode & 0o777).toString(8)}); fix it with: chmod 600 ${file}`,
      );
    }
    raw = readFileSync(file, 'utf8');
  } catch (e) {
    if (e instanceof CliError) throw e;
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new CliError(`cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  try {
    return StoredCredentials.parse(JSON.parse(raw));
  } catch {
    throw new CliError(`${file} is not a Coffer credentials file; remove it and run coffer login`);
  }
}

/** Written to a private temporary file and renamed over the old one, so no reader ever sees a half or a wider file. */
export function writeCredentials(configDir: string, creds: StoredCredentials): void {
  mkdirSync(configDir, { recursive: true, mode: 0o700 });
  const file = credentialsFile(configDir);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(creds, null, 2)}\n`, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
}

export function removeCredentials(configDir: string): boolean {
  const file = credentialsFile(configDir);
  try {
    statSync(file);
  } catch {
    return false;
  }
  rmSync(file, { force: true });
  return true;
}
