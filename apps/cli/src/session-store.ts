import { spawnSync } from 'node:child_process';
import {
  accessSync,
  chmodSync,
  constants,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import type { CliEnv } from './config.ts';
import { CliError, EXIT, usageError } from './output.ts';

/**
 * Where a session's secrets live: the refresh credential and the machine's private key. The OS keychain where there
 * is one, through the tool the OS ships (no native module): `secret-tool` (libsecret: GNOME Keyring, KWallet) on
 * Linux, `security` (the login keychain) on macOS. Else a file of its own, mode 0600, that is refused when it is
 * readable by anyone else. credentials.json names the store and the session, never the secrets.
 */
export type StoreKind = 'secret-tool' | 'security' | 'file';

export interface SessionSecret {
  refreshToken: string;
  /** The machine's Ed25519 private key, PKCS#8 DER, base64url. */
  privateKey: string;
}

const SERVICE = 'coffer-cli';
export const sessionSecretFile = (configDir: string) => path.join(configDir, 'session-secret.json');

function onPath(env: Pick<CliEnv, 'pathDirs'>, tool: string): string | undefined {
  for (const dir of env.pathDirs) {
    const candidate = path.join(dir, tool);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** The keychain this machine has, if any. */
function keychainOf(env: Pick<CliEnv, 'pathDirs'>): { kind: StoreKind; tool: string } | undefined {
  if (process.platform === 'darwin') {
    const tool = onPath(env, 'security');
    return tool ? { kind: 'security', tool } : undefined;
  }
  const tool = onPath(env, 'secret-tool');
  return tool ? { kind: 'secret-tool', tool } : undefined;
}

/** The stores to try for a new session, best first, as COFFER_CREDENTIAL_STORE allows. */
function candidates(env: Pick<CliEnv, 'credentialStore' | 'pathDirs'>): StoreKind[] {
  const choice = env.credentialStore ?? 'auto';
  if (choice !== 'auto' && choice !== 'keychain' && choice !== 'file') {
    throw usageError(`COFFER_CREDENTIAL_STORE must be auto, keychain or file, not "${choice}"`);
  }
  if (choice === 'file') return ['file'];
  const keychain = keychainOf(env);
  if (choice === 'keychain') {
    if (!keychain) {
      throw usageError(
        'COFFER_CREDENTIAL_STORE=keychain, but no keychain tool was found on PATH (secret-tool on Linux, security on macOS)',
      );
    }
    return [keychain.kind];
  }
  return keychain ? [keychain.kind, 'file'] : ['file'];
}

const encode = (s: SessionSecret) => Buffer.from(JSON.stringify(s)).toString('base64url');

function decode(raw: string): SessionSecret | null {
  try {
    const v = JSON.parse(Buffer.from(raw.trim(), 'base64url').toString('utf8')) as Partial<SessionSecret>;
    return typeof v.refreshToken === 'string' && typeof v.privateKey === 'string'
      ? { refreshToken: v.refreshToken, privateKey: v.privateKey }
      : null;
  } catch {
    return null;
  }
}

/** Runs a keychain tool; the secret only ever travels on its standard input, never in its arguments. */
function run(tool: string, args: string[], input = ''): { ok: boolean; stdout: string } {
  const r = spawnSync(tool, args, { input, encoding: 'utf8', timeout: 15_000, stdio: ['pipe', 'pipe', 'pipe'] });
  return { ok: r.status === 0, stdout: r.stdout ?? '' };
}

function toolFor(kind: StoreKind, env: Pick<CliEnv, 'pathDirs'>): string {
  const tool = onPath(env, kind);
  if (!tool) throw new CliError(`the session's secrets are in the keychain, but ${kind} is not on PATH`, EXIT.denied);
  return tool;
}

function writeFileStore(configDir: string, account: string, secret: SessionSecret): void {
  mkdirSync(configDir, { recursive: true, mode: 0o700 });
  const file = sessionSecretFile(configDir);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify({ account, ...secret }, null, 2)}\n`, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
}

function readFileStore(configDir: string, account: string): SessionSecret | null {
  const file = sessionSecretFile(configDir);
  let raw: string;
  try {
    const st = statSync(file);
    if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
      throw new CliError(
        `${file} can be read by other users (mode ${(st.mode & 0o777).toString(8)}), so it is not used; ` +
          `fix it with: chmod 600 ${file} (and consider the session exposed: coffer logout, then log in again)`,
        EXIT.denied,
      );
    }
    raw = readFileSync(file, 'utf8');
  } catch (e) {
    if (e instanceof CliError) throw e;
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new CliError(`cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  try {
    const v = JSON.parse(raw) as Partial<SessionSecret> & { account?: string };
    if (v.account !== account || typeof v.refreshToken !== 'string' || typeof v.privateKey !== 'string') return null;
    return { refreshToken: v.refreshToken, privateKey: v.privateKey };
  } catch {
    return null;
  }
}

/**
 * Keeps a new session's secrets in the best store there is, and says which. A keychain that refuses (no D-Bus
 * session, a locked keyring nobody can unlock here) is passed over for the file, unless the user asked for the
 * keychain alone.
 */
export function saveNewSessionSecret(
  env: Pick<CliEnv, 'credentialStore' | 'pathDirs' | 'configDir'>,
  account: string,
  secret: SessionSecret,
): StoreKind {
  for (const kind of candidates(env)) {
    if (kind === 'file') {
      writeFileStore(env.configDir, account, secret);
      return kind;
    }
    if (storeInKeychain(kind, env, account, secret)) return kind;
  }
  throw new CliError('the keychain refused to store the session (COFFER_CREDENTIAL_STORE=keychain)', EXIT.failure);
}

function storeInKeychain(
  kind: StoreKind,
  env: Pick<CliEnv, 'pathDirs'>,
  account: string,
  secret: SessionSecret,
): boolean {
  const tool = toolFor(kind, env);
  if (kind === 'secret-tool') {
    return run(
      tool,
      ['store', '--label', `Coffer session ${account}`, 'service', SERVICE, 'account', account],
      encode(secret),
    ).ok;
  }
  // `security -i` reads its commands from standard input, so the secret stays out of the process list; the
  // account is a UUID and the secret base64url, so neither needs quoting.
  return run(tool, ['-i'], `add-generic-password -U -s ${SERVICE} -a ${account} -w ${encode(secret)}\n`).ok;
}

/** Replaces the secrets of an existing session (after a refresh) in the store it already uses. */
export function saveSessionSecret(
  kind: StoreKind,
  env: Pick<CliEnv, 'pathDirs' | 'configDir'>,
  account: string,
  secret: SessionSecret,
): void {
  if (kind === 'file') {
    writeFileStore(env.configDir, account, secret);
    return;
  }
  if (!storeInKeychain(kind, env, account, secret)) {
    throw new CliError(`the keychain (${kind}) refused to keep the renewed session: run coffer login again`);
  }
}

export function loadSessionSecret(
  kind: StoreKind,
  env: Pick<CliEnv, 'pathDirs' | 'configDir'>,
  account: string,
): SessionSecret | null {
  if (kind === 'file') return readFileStore(env.configDir, account);
  const tool = toolFor(kind, env);
  const r =
    kind === 'secret-tool'
      ? run(tool, ['lookup', 'service', SERVICE, 'account', account])
      : run(tool, ['find-generic-password', '-s', SERVICE, '-a', account, '-w']);
  return r.ok ? decode(r.stdout) : null;
}

export function deleteSessionSecret(
  kind: StoreKind,
  env: Pick<CliEnv, 'pathDirs' | 'configDir'>,
  account: string,
): void {
  if (kind === 'file') {
    rmSync(sessionSecretFile(env.configDir), { force: true });
    return;
  }
  const tool = onPath(env, kind);
  if (!tool) return;
  if (kind === 'secret-tool') run(tool, ['clear', 'service', SERVICE, 'account', account]);
  else run(tool, ['delete-generic-password', '-s', SERVICE, '-a', account]);
}
