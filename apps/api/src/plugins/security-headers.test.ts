import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import helmet from 'helmet';
import { describe, expect, it } from 'vitest';
import { headersOf } from './security-headers.plugin.ts';

/** The headers a real response gets from a middleware, over a real socket. */
async function realHeaders(middleware: Parameters<typeof headersOf>[0]): Promise<Record<string, unknown>> {
  const server = createServer((req, res) => middleware(req, res, () => res.end()));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const { port } = server.address() as AddressInfo;
    return await new Promise((resolve, reject) =>
      request({ port, host: '127.0.0.1' }, (res) => {
        res.resume();
        resolve(res.headers);
      })
        .on('error', reject)
        .end(),
    );
  } finally {
    server.close();
  }
}

describe('security headers recorded once', () => {
  for (const tls of [false, true]) {
    it(`are exactly what helmet sets on every response (${tls ? 'TLS' : 'plain HTTP'})`, async () => {
      const middleware = helmet({
        contentSecurityPolicy: {
          directives: {
            defaultSrc: ["'none'"],
            frameAncestors: ["'none'"],
            upgradeInsecureRequests: tls ? [] : null,
          },
        },
      }) as Parameters<typeof headersOf>[0];
      const { set } = headersOf(middleware);
      const real = await realHeaders(middleware);
      const recorded = Object.fromEntries(set.map(([n, v]) => [n.toLowerCase(), v]));
      for (const drop of ['date', 'connection', 'content-length', 'keep-alive', 'transfer-encoding']) delete real[drop];
      expect(recorded).toEqual(real);
      expect(recorded['content-security-policy']).toContain("default-src 'none'");
    });
  }

  it('refuses a middleware that depends on the request', () => {
    expect(() => headersOf((_req, _res, _next) => undefined)).toThrow(/synchronously/);
    const listValued: Parameters<typeof headersOf>[0] = (_req, res, next) => {
      res.setHeader('x', ['a', 'b']);
      next();
    };
    expect(() => headersOf(listValued)).toThrow(/plain string/);
  });
});
