import pino from 'pino';
import { prettyFactory } from 'pino-pretty';
import { describe, expect, it } from 'vitest';
import { type Config, loadConfig } from '../../apps/api/src/config.ts';
import { createFastify } from '../../apps/api/src/http/fastify-instance.ts';
import { loggerOptions } from '../../apps/api/src/logger.ts';
import { testEnv } from '../support/test-app.ts';

/** What a person watching the server on a terminal sees of one request, at the default level (info). */
async function linesOfOneRequest(terminal: boolean): Promise<{ json: Record<string, unknown>[]; pretty: string }> {
  const parsed = loadConfig(testEnv({ LOG_LEVEL: 'info' }));
  if (!parsed.ok) throw new Error(parsed.problems.join('\n'));
  const config: Config = parsed.config;
  const lines: string[] = [];
  const logger = pino(loggerOptions('info', false), { write: (l: string) => void lines.push(l) });
  const app = createFastify(config, logger, { terminal });
  app.get('/v1/ping', async () => ({ ok: true }));
  await app.ready();
  const res = await app.inject({ url: '/v1/ping', headers: { 'x-request-id': 'one-request' } });
  expect(res.statusCode).toBe(200);
  await app.close();
  const json = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.requestId === 'one-request');
  // The pretty printer as the server configures it on a terminal.
  const transport = loggerOptions('info', true).transport as { options: Record<string, unknown> };
  const pretty = prettyFactory({ ...transport.options, colorize: false });
  return { json, pretty: json.map((l) => pretty(l)).join('') };
}

describe('request logging', () => {
  it('prints one line per request on a terminal at info level: method, URL, status and time', async () => {
    const { json, pretty } = await linesOfOneRequest(true);
    expect(json).toHaveLength(1);
    expect(json[0]?.msg).toMatch(/^GET \/v1\/ping 200 \d+\.\d ms$/);
    expect(pretty.trimEnd().split('\n')).toHaveLength(1);
    expect(pretty).toContain('INFO');
    expect(pretty).toContain('GET /v1/ping 200');
  });

  it('keeps Fastify’s incoming and completed lines in JSON logs (what log pipelines and the tests read)', async () => {
    const { json } = await linesOfOneRequest(false);
    expect(json.map((l) => l.msg)).toEqual(['incoming request', 'request completed']);
  });
});
