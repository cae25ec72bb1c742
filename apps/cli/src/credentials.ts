import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CliError } from './output.ts';

/**
 * The token cache: one JSON file, mode 0600 in a 0700 folder, holding the access token for one server and what
 * renews it: a session (kept in the keychain, see session-store.ts), or, only when the user asked for it with
 * `coffer login --save-secret`, the client secret.
 */
export interface StoredCredentials {
  url: string;
  clientId: string;
  accessToken: string;
  /** ms since the epoch */
  expiresAt: number;
  clientSecret?: string;
  /**
   * A federated login: where the platform token comes from, never the token itself (the file, or the GitHub Actions
   * runner, is the credential), so the CLI logs in again by itself when the Coffer token expires.
   */
  federation?: { identity: string; source: { file: string } | { githubActions: { audience: string } } };
  /**
   * A person's session (`coffer login`): which one, when it ends for good, and which store holds its refresh
   * credential and machine key (never this file, unless the store is the 0600 session-secret.json beside it).
   */
  session?: { id: string; expiresAt: number; store: 'secret-tool' | 'security' | 'file' };
}

function asSession(v: unknown): StoredCredentials['session'] {
  if (v === undefined) return undefined;
  const o = (typeof v === 'object' && v !== null ? v : {}) as Record<string, unknown>;
  if (typeof o.id !== 'string') throw new Error('session.id');
  if (typeof o.expiresAt !== 'number' || !Number.isFinite(o.expiresAt)) throw new Error('session.expiresAt');
  if (o.store !== 'secret-tool' && o.store !== 'security' && o.store !== 'file') throw new Error('session.store');
  return { id: o.id, expiresAt: o.expiresAt, store: o.store };
}

function asFederation(v: unknown): StoredCredentials['federation'] {
  if (v === undefined) return undefined;
  const f = (typeof v === 'object' && v !== null ? v : {}) as { identity?: unknown; source?: unknown };
  const source = (typeof f.source === 'object' && f.source !== null ? f.source : {}) as Record<string, unknown>;
  if (typeof f.identity !== 'string') throw new Error('federation.identity');
  if (typeof source.file === 'string') return { identity: f.identity, source: { file: source.file } };
  const gh = source.githubActions as { audience?: unknown } | undefined;
  if (gh && typeof gh.audience === 'string') {
    return { identity: f.identity, source: { githubActions: { audience: gh.audience } } };
  }
  throw new Error('federation.source');
}

/**
 * Checked by hand, not with a zod schema: every `coffer run` reads this file, and loading zod would cost more
 * than the rest of the start-up. Unknown keys are dropped, as z.object did.
 */
function asStoredCredentials(v: unknown): StoredCredentials {
  const o = (typeof v === 'object' && v !== null ? v : {}) as Record<string, unknown>;
  const str = (k: string): string => {
    const value = o[k];
    if (typeof value !== 'string') throw new Error(k);
    return value;
  };
  if (typeof o.expiresAt !== 'number' || !Number.isFinite(o.expiresAt)) throw new Error('expiresAt');
  if (o.clientSecret !== undefined && typeof o.clientSecret !== 'string') throw new Error('clientSecret');
  const federation = asFederation(o.federation);
  const session = asSession(o.session);
  return {
    url: str('url'),
    clientId: str('clientId'),
    accessToken: str('accessToken'),
    expiresAt: o.expiresAt,
    ...(o.clientSecret !== undefined ? { clientSecret: o.clientSecret } : {}),
    ...(federation ? { federation } : {}),
    ...(session ? { session } : {}),
  };
}

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
    return asStoredCredentials(JSON.parse(raw));
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
