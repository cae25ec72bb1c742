import { DEFAULT_URL, readEnv } from './config.ts';
import type { GlobalOptions } from './context.ts';
import { readCredentials } from './credentials.ts';
import { usageError } from './output.ts';

export const normalise = (url: string) => url.replace(/\/+$/, '');

export function serverUrl(globals: GlobalOptions): string {
  const env = readEnv();
  const raw = globals.url ?? env.url ?? readCredentials(env.configDir)?.url ?? DEFAULT_URL;
  try {
    const u = new URL(raw);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('protocol');
  } catch {
    throw usageError(`--url / COFFER_URL must be an http(s) URL, e.g. ${DEFAULT_URL}`);
  }
  return normalise(raw);
}
