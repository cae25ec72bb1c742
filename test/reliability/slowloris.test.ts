import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { type Api, call, clusterSuite, sleep } from './harness.ts';
import { recordOutcome } from './results.ts';

let api: Api;
const limits = {
  COFFER_HEADERS_TIMEOUT_MS: '1500',
  COFFER_REQUEST_TIMEOUT_MS: '4000',
  COFFER_BODY_LIMIT_BYTES: '65536',
};
clusterSuite({ apis: [limits] }, (s) => {
  [api] = s.apis;
});

const port = () => Number(new URL(api.base).port);

/** Opens a raw connection and returns when the server closes it (or after `maxMs`). */
function slowClient(
  send: (socket: net.Socket) => void,
  maxMs: number,
): Promise<{ closedAfterMs: number; response: string }> {
  return new Promise((resolve) => {
    const started = Date.now();
    let response = '';
    const socket = net.connect(port(), '127.0.0.1', () => send(socket));
    socket.on('data', (d) => {
      response += d;
    });
    const done = () => resolve({ closedAfterMs: Date.now() - started, response });
    socket.on('close', done);
    socket.on('error', () => undefined);
    setTimeout(() => {
      socket.destroy();
    }, maxMs).unref();
  });
}

describe('slow-loris and oversized requests', () => {
  it('cuts off a client that dribbles its headers, while serving everyone else', async () => {
    const loris = Array.from({ length: 20 }, () =>
      slowClient((s) => {
        s.write('GET /healthz HTTP/1.1\r\nHost: coffer\r\n');
        const timer = setInterval(() => {
          if (!s.destroyed) s.write('X-Slow: a\r\n');
        }, 300);
        s.on('close', () => clearInterval(timer));
      }, 10_000),
    );
    await sleep(200);
    const served: number[] = [];
    for (let i = 0; i < 10; i++) served.push((await call(api.base, 'GET', '/healthz')).status);
    const results = await Promise.all(loris);
    expect(served.every((s) => s === 200)).toBe(true);
    const slowest = Math.max(...results.map((r) => r.closedAfterMs));
    expect(slowest).toBeLessThan(5_000);
    for (const r of results) expect(r.response).not.toContain('200 OK');
    recordOutcome('slow-loris', { slowClients: results.length, cutOffWithinMs: slowest, othersServed: served.length });
  });

  it('cuts off a client that dribbles its body, refuses oversized bodies and headers', async () => {
    const body = await slowClient((s) => {
      s.write(
        'PUT /v1/secrets/sandbox/x/K HTTP/1.1\r\nHost: coffer\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"va',
      );
      const timer = setInterval(() => {
        if (!s.destroyed) s.write(' ');
      }, 500);
      s.on('close', () => clearInterval(timer));
    }, 15_000);
    expect(body.closedAfterMs).toBeLessThan(8_000);

    // (An unauthenticated body is never read at all: the 401 comes first. The login route is public.)
    const big = await call(api.base, 'POST', '/v1/auth/token', {
      body: { clientId: 'x', clientSecret: 'x'.repeat(70_000) },
    });
    expect(big.status).toBe(413);
    const headers = await slowClient((s) => {
      s.write(`GET /healthz HTTP/1.1\r\nHost: coffer\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
    }, 5_000);
    expect(headers.response).toMatch(/^HTTP\/1\.1 431/);
    expect((await call(api.base, 'GET', '/healthz')).status).toBe(200);
    recordOutcome('oversized-and-slow-bodies', {
      slowBodyCutOffMs: body.closedAfterMs,
      oversizedBody: big.status,
      oversizedHeaders: 431,
    });
  });
});
