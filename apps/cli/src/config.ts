import os from 'node:os';
import path from 'node:path';

/**
 * The only module of the CLI that reads the environment (a lint rule forbids it elsewhere). Every variable the
 * CLI honours is listed here and in the README.
 */
export interface CliEnv {
  /** COFFER_URL: the server, unless --url says otherwise. */
  url: string | undefined;
  /** COFFER_ENV: the environment (`staging`, `production`, …) of every secret command, unless --env says otherwise. */
  environment: string | undefined;
  /** COFFER_CLIENT_ID / COFFER_CLIENT_SECRET: log in with these on every command instead of a cached token. */
  clientId: string | undefined;
  clientSecret: string | undefined;
  /** COFFER_CONFIG_DIR, else $XDG_CONFIG_HOME/coffer, else ~/.config/coffer: where the token is cached. */
  configDir: string;
  /** NO_COLOR (any value) turns colours off; FORCE_COLOR=0 too. */
  noColor: boolean;
  /** COFFER_IDENTITY: log in by workload identity federation as this client id (no client secret). */
  identity: string | undefined;
  /** COFFER_TOKEN_FILE: the platform token for federation (a Kubernetes projected service-account token). */
  tokenFile: string | undefined;
  /** COFFER_AUDIENCE: the audience to ask GitHub Actions for (the trusted issuer's, `coffer:<tenant slug>`). */
  audience: string | undefined;
  /**
   * COFFER_CREDENTIAL_STORE: where `coffer login` keeps a session's refresh credential and machine key. `auto`
   * (default): the OS keychain when there is one (secret-tool on Linux, security on macOS), else a 0600 file;
   * `keychain`: the keychain or fail; `file`: the file.
   */
  credentialStore: string | undefined;
  /** PATH, split: where the keychain tools are looked for. */
  pathDirs: string[];
  /** ACTIONS_ID_TOKEN_REQUEST_URL / _TOKEN: set by GitHub Actions in a job with `id-token: write`. */
  githubOidc: { requestUrl: string; requestToken: string } | undefined;
}

export const DEFAULT_URL = 'http://127.0.0.1:7400';

export function readEnv(): CliEnv {
  const env = process.env;
  const nonEmpty = (v: string | undefined) => (v !== undefined && v !== '' ? v : undefined);
  const xdg = nonEmpty(env.XDG_CONFIG_HOME);
  return {
    url: nonEmpty(env.COFFER_URL),
    environment: nonEmpty(env.COFFER_ENV),
    clientId: nonEmpty(env.COFFER_CLIENT_ID),
    clientSecret: nonEmpty(env.COFFER_CLIENT_SECRET),
    configDir: nonEmpty(env.COFFER_CONFIG_DIR) ?? path.join(xdg ?? path.join(os.homedir(), '.config'), 'coffer'),
    noColor: env.NO_COLOR !== undefined || env.FORCE_COLOR === '0',
    identity: nonEmpty(env.COFFER_IDENTITY),
    tokenFile: nonEmpty(env.COFFER_TOKEN_FILE),
    audience: nonEmpty(env.COFFER_AUDIENCE),
    credentialStore: nonEmpty(env.COFFER_CREDENTIAL_STORE),
    pathDirs: (env.PATH ?? '').split(path.delimiter).filter(Boolean),
    githubOidc:
      nonEmpty(env.ACTIONS_ID_TOKEN_REQUEST_URL) && nonEmpty(env.ACTIONS_ID_TOKEN_REQUEST_TOKEN)
        ? {
            requestUrl: env.ACTIONS_ID_TOKEN_REQUEST_URL as string,
            requestToken: env.ACTIONS_ID_TOKEN_REQUEST_TOKEN as string,
          }
        : undefined,
  };
}

/** The environment a child of `coffer run` starts from: this process's own, to which the bundle is added. */
export function inheritedEnv(): Record<string, string> {
  // Keys are variable names (a secret may be called `constructor`): no prototype to collide with.
  const out: Record<string, string> = Object.create(null);
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) out[k] = v;
  return out;
}
