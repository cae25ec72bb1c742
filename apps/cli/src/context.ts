import { ENVIRONMENT_SLUG_PATTERN } from '@coffer/contracts/patterns';
import { CofferClient, type CofferClientOptions } from '@coffer/sdk';
import { readEnv } from './config.ts';
import { readCredentials, writeCredentials } from './credentials.ts';
import { detectSource, subjectTokenOf } from './federation.ts';
import { REQUEST_ID_PREFIX, USER_AGENT } from './meta.ts';
import { CliError, EXIT, usageError } from './output.ts';
import { normalise, serverUrl } from './server-url.ts';
import { refreshStoredSession } from './session.ts';

export { REQUEST_ID_PREFIX, VERSION } from './meta.ts';
export { serverUrl } from './server-url.ts';

/** Options every command accepts (declared on the program). */
export interface GlobalOptions {
  url?: string;
  /** --env: the environment; COFFER_ENV when absent, then the tenant's default. */
  env?: string;
}

/** `*` reaches every environment where a route allows it (the audit log); the server refuses it elsewhere. */
export function checkEnvironment(slug: string, source = '--env / COFFER_ENV'): string {
  if (slug === '*' || ENVIRONMENT_SLUG_PATTERN.test(slug)) return slug;
  throw usageError(`${source} must be an environment slug (1-63 lower-case letters, digits, _ or -), not "${slug}"`);
}

/** The environment a command works in: --env, else COFFER_ENV, else none (the tenant's default). */
export function environmentOf(globals: GlobalOptions): string | undefined {
  if (globals.env !== undefined) return checkEnvironment(globals.env, '--env');
  const fromEnv = readEnv().environment;
  return fromEnv === undefined ? undefined : checkEnvironment(fromEnv, 'COFFER_ENV');
}

export function newClient(
  url: string,
  auth: Pick<
    CofferClientOptions,
    'clientId' | 'clientSecret' | 'token' | 'tokenExpiresAt' | 'federation' | 'onToken' | 'renewToken'
  >,
  environment?: string,
) {
  return new CofferClient({
    baseUrl: url,
    ...auth,
    environment,
    userAgent: USER_AGENT,
    requestIdPrefix: REQUEST_ID_PREFIX,
    timeoutMs: 30_000,
  });
}

/**
 * A client for the command: COFFER_CLIENT_ID/COFFER_CLIENT_SECRET when both are set (CI), else the token cached by
 * `coffer login` for this server, renewed by its session (or with the saved client secret, if the user chose that).
 */
export function connect(globals: GlobalOptions): { client: CofferClient; url: string } {
  const env = readEnv();
  const url = serverUrl(globals);
  // Every route that takes ?env gets it from the SDK; the others (identities, tenants, …) are not per environment.
  const environment = environmentOf(globals);
  if (env.clientId && env.clientSecret) {
    return { client: newClient(url, { clientId: env.clientId, clientSecret: env.clientSecret }, environment), url };
  }
  if (env.identity && !env.clientId) {
    // CI and pods: the platform token is the credential, found afresh by every command (no login step).
    const subjectToken = subjectTokenOf(detectSource({}, env), env);
    return { client: newClient(url, { federation: { identity: env.identity, subjectToken } }, environment), url };
  }
  const stored = readCredentials(env.configDir);
  if (!stored || normalise(stored.url) !== url) {
    throw new CliError(
      `not logged in to ${url}: run coffer login, or set COFFER_CLIENT_ID and COFFER_CLIENT_SECRET`,
      EXIT.denied,
    );
  }
  if (stored.clientSecret) {
    const client = new CofferClient({
      baseUrl: url,
      clientId: stored.clientId,
      clientSecret: stored.clientSecret,
      token: stored.accessToken,
      tokenExpiresAt: stored.expiresAt,
      userAgent: USER_AGENT,
      requestIdPrefix: REQUEST_ID_PREFIX,
      timeoutMs: 30_000,
      environment,
      onToken: (t) =>
        writeCredentials(env.configDir, { ...stored, accessToken: t.accessToken, expiresAt: t.expiresAt }),
    });
    return { client, url };
  }
  if (stored.session) {
    // A person's session: the SDK asks for a new token when this one is about to expire or is refused.
    let held = stored.accessToken;
    const client = newClient(
      url,
      {
        token: stored.accessToken,
        tokenExpiresAt: stored.expiresAt,
        renewToken: async () => {
          const t = await refreshStoredSession(env, url, held);
          held = t.accessToken;
          return t;
        },
      },
      environment,
    );
    return { client, url };
  }
  if (stored.federation) {
    const { identity, source } = stored.federation;
    const client = newClient(
      url,
      {
        federation: { identity, subjectToken: subjectTokenOf(source, env) },
        token: stored.accessToken,
        tokenExpiresAt: stored.expiresAt,
        onToken: (t) =>
          writeCredentials(env.configDir, { ...stored, accessToken: t.accessToken, expiresAt: t.expiresAt }),
      },
      environment,
    );
    return { client, url };
  }
  if (stored.expiresAt <= Date.now()) {
    throw new CliError(
      `the token for ${url} expired at ${new Date(stored.expiresAt).toISOString()}: run coffer login again`,
      EXIT.denied,
    );
  }
  return { client: newClient(url, { token: stored.accessToken, tokenExpiresAt: stored.expiresAt }, environment), url };
}
