import type { IncomingHttpHeaders } from 'node:http';
import { createRequire } from 'node:module';
import { ENVIRONMENT_SLUG_PATTERN, SECRET_KINDS, SECRET_OWNER_PATTERN } from '@coffer/contracts/patterns';
import { inheritedEnv, readEnv } from './config.ts';
import { readCredentials } from './credentials.ts';
import { REQUEST_ID_PREFIX, USER_AGENT } from './meta.ts';
import { injectBundle, runChild } from './run-core.ts';
import { normalise, serverUrl } from './server-url.ts';

/**
 * `coffer run` with a cached token, on the happy path, without loading commander, zod, the contracts' schemas or
 * the SDK: those cost several times what the rest of a run does, and `run` starts every deployment's process.
 *
 * It handles only what it can do exactly as the full command would; it returns null, and the full command runs
 * instead, for anything else: other arguments or spellings, CI credentials, a token near its expiry, an invalid
 * path, and the answers the SDK would retry (429, 503, a lost connection) or renew a token for (401 with a saved
 * secret). Errors it does meet are the SDK's own (`errorFromResponse`), loaded only then.
 */
export async function fastRun(argv: readonly string[]): Promise<number | null> {
  const parsed = parseRunArgs(argv.slice(2));
  if (!parsed) return null;
  const env = readEnv();
  // Credentials from the environment (a client secret, or a workload identity) take the full path, as connect() does.
  if ((env.clientId && env.clientSecret) || env.identity) return null;
  const url = serverUrl({ url: parsed.url ?? env.url });
  // --env, else COFFER_ENV, as connect() decides; a slug the full command would refuse is left to it to explain.
  const environment = parsed.env ?? env.environment;
  if (environment !== undefined && !ENVIRONMENT_SLUG_PATTERN.test(environment)) return null;
  const query = environment !== undefined ? `?env=${environment}` : '';
  const stored = readCredentials(env.configDir);
  // The SDK renews a token well inside its last minute; staying out of it leaves renewal to the SDK.
  if (!stored || normalise(stored.url) !== url || stored.expiresAt - Date.now() < 60_000) return null;

  const childEnv = inheritedEnv();
  let requests = 0;
  for (const b of parsed.bundles) {
    const [kind, owner] = b.split('/') as [string, string];
    let res: Answer;
    try {
      res = await get(`${url}/v1/bundles/${kind}/${owner}${query}`, {
        accept: 'application/json',
        authorization: `Bearer ${stored.accessToken}`,
        'user-agent': USER_AGENT,
        'x-request-id': `${REQUEST_ID_PREFIX}${++requests}`,
      });
    } catch {
      return null;
    }
    if (
      res.status === 429 ||
      res.status === 503 ||
      (res.status === 401 && (stored.clientSecret || stored.federation || stored.session))
    ) {
      return null;
    }
    if (res.status !== 200) {
      const { errorFromResponse } = await import('./cli.ts');
      throw await errorFromResponse(res.status, res.headers, res.text);
    }
    const values = bundleValues(res.text);
    if (!values) return null;
    injectBundle(childEnv, b, values, parsed);
  }
  const [file, ...args] = parsed.command as [string, ...string[]];
  return runChild(file, args, childEnv);
}

// Through require, not import: on Node 22 and later, importing node:http as an ES module evaluates every export of
// its facade, and the lazy WebSocket export among them loads undici (a third of this path's start-up). (main.ts's
// bundle is CommonJS, where import.meta.url is the file's own path: see build.mjs.)
const nodeRequire = createRequire(import.meta.url);

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
}

/**
 * One GET over node:http(s). Not fetch: on Node 20 the first fetch of a process loads undici, which costs more CPU
 * than everything else `coffer run` does.
 */
function get(url: string, headers: Record<string, string>): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const { request } = (
      url.startsWith('https:') ? nodeRequire('node:https') : nodeRequire('node:http')
    ) as typeof import('node:http');
    const req = request(url, { headers, timeout: 30_000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

interface RunArgs {
  bundles: string[];
  url: string | undefined;
  env: string | undefined;
  override: boolean;
  allowEmpty: boolean;
  command: string[];
}

/** `run` and its own options in the spellings commander takes; null for anything else (commander then decides). */
export function parseRunArgs(args: readonly string[]): RunArgs | null {
  if (args[0] !== 'run') return null;
  const out: RunArgs = { bundles: [], url: undefined, env: undefined, override: true, allowEmpty: false, command: [] };
  for (let i = 1; i < args.length; i++) {
    const a = args[i] as string;
    if (a === '--') {
      out.command = args.slice(i + 1);
      break;
    }
    if (!a.startsWith('-')) {
      // passThroughOptions: from the first operand on, everything belongs to the command
      out.command = args.slice(i);
      break;
    }
    const eq = a.indexOf('=');
    const name = eq > 0 ? a.slice(0, eq) : a;
    if (name === '--bundle' || name === '--url' || name === '--env') {
      const value = eq > 0 ? a.slice(eq + 1) : args[++i];
      if (value === undefined || value === '' || (eq < 0 && value.startsWith('-'))) return null;
      if (name === '--url') out.url = value;
      else if (name === '--env') out.env = value;
      else if (isOwnerPath(value)) out.bundles.push(value);
      else return null;
    } else if (a === '--no-override') out.override = false;
    else if (a === '--allow-empty') out.allowEmpty = true;
    else return null;
  }
  return out.bundles.length > 0 && out.command.length > 0 ? out : null;
}

/** Exactly the paths the SDK's parseOwnerPath accepts (test/cli/fast-run.test.ts holds them to it). */
function isOwnerPath(p: string): boolean {
  const parts = p.split('/');
  return (
    parts.length === 2 &&
    (SECRET_KINDS as readonly string[]).includes(parts[0] as string) &&
    SECRET_OWNER_PATTERN.test(parts[1] as string)
  );
}

/** A bundle's values if the body is a Bundle as the contract states it (else null: the SDK says what is wrong). */
function bundleValues(text: string): Record<string, string> | null {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof body !== 'object' || body === null) return null;
  const { values, versions } = body as { values?: unknown; versions?: unknown };
  const isRecordOf = (v: unknown, ok: (x: unknown) => boolean) =>
    typeof v === 'object' && v !== null && !Array.isArray(v) && Object.values(v).every(ok);
  if (!isRecordOf(values, (x) => typeof x === 'string') || !isRecordOf(versions, Number.isInteger)) return null;
  return values as Record<string, string>;
}
