import { createHash, createPrivateKey, generateKeyPairSync, sign } from 'node:crypto';
import { mkdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { sessionRefreshMessage, type TokenResponse } from '@coffer/contracts';
import { CofferError } from '@coffer/sdk';
import type { CliEnv } from './config.ts';
import { newClient } from './context.ts';
import { readCredentials, type StoredCredentials, writeCredentials } from './credentials.ts';
import { CliError, EXIT } from './output.ts';
import { loadSessionSecret, type SessionSecret, saveNewSessionSecret, saveSessionSecret } from './session-store.ts';

type Env = Pick<CliEnv, 'configDir' | 'credentialStore' | 'pathDirs'>;

/** A fresh machine key for a new session: the public half for the server, the private half for the store. */
export function newMachineKey(): { publicKey: string; privateKey: string } {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  return {
    publicKey: (publicKey.export({ format: 'jwk' }) as { x: string }).x,
    privateKey: privateKey.export({ format: 'der', type: 'pkcs8' }).toString('base64url'),
  };
}

/** The label the session list shows for this machine. */
export const machineName = (): string => `coffer-cli on ${os.hostname()}`.slice(0, 128);

/** After a login that answered a session: its secrets go to the store, the rest to credentials.json. */
export function keepNewSession(
  env: Env,
  url: string,
  clientId: string,
  token: TokenResponse,
  privateKey: string,
): StoredCredentials {
  const session = token.session;
  if (!session) throw new CliError('the server answered no session (is it older than this CLI?)');
  const store = saveNewSessionSecret(env, session.id, { refreshToken: session.refreshToken, privateKey });
  const creds: StoredCredentials = {
    url,
    clientId,
    accessToken: token.accessToken,
    expiresAt: Date.now() + token.expiresIn * 1000,
    session: { id: session.id, expiresAt: Date.parse(session.expiresAt), store },
  };
  writeCredentials(env.configDir, creds);
  return creds;
}

/**
 * One refresh at a time per config folder: a refresh spends the credential, so two commands refreshing at once
 * with the same one would look like a stolen copy and end the session. A lock older than 30 s is a dead process's.
 */
async function withRefreshLock<T>(configDir: string, fn: () => Promise<T>): Promise<T> {
  const lock = path.join(configDir, 'refresh.lock');
  mkdirSync(configDir, { recursive: true, mode: 0o700 });
  const until = Date.now() + 20_000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      try {
        if (Date.now() - statSync(lock).mtimeMs > 30_000) rmSync(lock, { recursive: true, force: true });
      } catch {
        // gone meanwhile
      }
      if (Date.now() > until) throw new CliError(`another coffer is refreshing the session (${lock}); try again`);
      await sleep(50);
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

const ended = (url: string) =>
  new CliError(
    `the session for ${url} has ended (revoked, expired, its identity changed, or its refresh credential was used elsewhere): run coffer login again`,
    EXIT.denied,
  );

/**
 * Renews the access token of the session in credentials.json: signs the stored refresh credential with the machine
 * key, keeps the next credential in the store and the new token in credentials.json. Another command may have
 * renewed it meanwhile (under the lock): its token is used then.
 */
export async function refreshStoredSession(
  env: Env,
  url: string,
  heldToken: string | undefined,
): Promise<{ accessToken: string; expiresAt: number }> {
  return withRefreshLock(env.configDir, async () => {
    const stored = readCredentials(env.configDir);
    const session = stored?.session;
    if (!stored || !session) throw new CliError(`not logged in to ${url}: run coffer login`, EXIT.denied);
    if (stored.accessToken !== heldToken && stored.expiresAt - Date.now() > 5_000) {
      return { accessToken: stored.accessToken, expiresAt: stored.expiresAt };
    }
    if (session.expiresAt <= Date.now()) {
      throw new CliError(
        `the session for ${url} ended at ${new Date(session.expiresAt).toISOString()}: run coffer login again`,
        EXIT.denied,
      );
    }
    const secret: SessionSecret | null = loadSessionSecret(session.store, env, session.id);
    if (!secret) {
      throw new CliError(
        `the session's refresh credential is not in ${session.store === 'file' ? 'session-secret.json' : `the keychain (${session.store})`} on this machine: run coffer login again`,
        EXIT.denied,
      );
    }
    const signedAt = new Date().toISOString();
    const hash = createHash('sha256').update(secret.refreshToken).digest('base64url');
    const key = createPrivateKey({ key: Buffer.from(secret.privateKey, 'base64url'), format: 'der', type: 'pkcs8' });
    const signature = sign(null, Buffer.from(sessionRefreshMessage(session.id, signedAt, hash), 'utf8'), key);
    let answer: TokenResponse;
    try {
      answer = await newClient(url, {}).call('refreshSession', {
        body: {
          sessionId: session.id,
          refreshToken: secret.refreshToken,
          signedAt,
          signature: signature.toString('base64url'),
        },
      });
    } catch (e) {
      if (e instanceof CofferError && e.status === 401) throw ended(url);
      throw e;
    }
    if (!answer.session) throw ended(url);
    // The next credential first: the one just used is spent, whatever happens to the token.
    saveSessionSecret(session.store, env, session.id, { ...secret, refreshToken: answer.session.refreshToken });
    const expiresAt = Date.now() + answer.expiresIn * 1000;
    writeCredentials(env.configDir, { ...stored, accessToken: answer.accessToken, expiresAt });
    return { accessToken: answer.accessToken, expiresAt };
  });
}
