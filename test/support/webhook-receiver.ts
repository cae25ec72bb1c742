import { createHmac, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReceivedDelivery {
  headers: http.IncomingHttpHeaders;
  rawBody: string;
  receivedAt: number;
}

/**
 * A webhook receiver on loopback: records every request with its raw body, and answers with the next status
 * queued by `respondWith` (200 once the queue is empty).
 */
export async function startReceiver(): Promise<{
  url: string;
  port: number;
  received: ReceivedDelivery[];
  respondWith: (...statuses: number[]) => void;
  close: () => Promise<void>;
}> {
  const received: ReceivedDelivery[] = [];
  const queue: number[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ headers: req.headers, rawBody: Buffer.concat(chunks).toString('utf8'), receivedAt: Date.now() });
      res.statusCode = queue.shift() ?? 200;
      res.end('ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/hooks/coffer`,
    port,
    received,
    respondWith: (...statuses) => queue.push(...statuses),
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  };
}

/**
 * Verifies `coffer-signature: t=<unix>,v1=<hex>` as a receiver would: HMAC-SHA256(secret, `${t}.${rawBody}`),
 * compared in constant time, with the timestamp within `toleranceSeconds` of now.
 */
export function verifySignature(
  secret: string,
  header: string | string[] | undefined,
  rawBody: string,
  toleranceSeconds = 300,
): { ok: boolean; timestamp: number } {
  if (typeof header !== 'string') return { ok: false, timestamp: 0 };
  const parts = Object.fromEntries(header.split(',').map((p) => p.split('=', 2) as [string, string]));
  const timestamp = Number(parts.t);
  const given = Buffer.from(parts.v1 ?? '', 'hex');
  const expected = createHmac('sha256', secret).update(`${timestamp}.${rawBody}`).digest();
  const fresh = Number.isInteger(timestamp) && Math.abs(Date.now() / 1000 - timestamp) <= toleranceSeconds;
  return { ok: fresh && given.length === expected.length && timingSafeEqual(given, expected), timestamp };
}
