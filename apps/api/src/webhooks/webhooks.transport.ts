import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';

export interface PostOptions {
  headers: Record<string, string>;
  body: string;
  /** Every connection of this request resolves its host through this, and only this. */
  lookup: LookupFunction;
  timeoutMs: number;
}

/**
 * One POST on a fresh connection, redirects not followed. node:http rather than fetch because the connection's
 * name resolution can be handed in: fetch resolves on its own, after and apart from any check of ours. No agent,
 * so a pooled socket opened for an earlier answer is never reused.
 */
export function postWebhook(url: URL, o: PostOptions): Promise<{ status: number }> {
  const request = url.protocol === 'https:' ? https.request : http.request;
  return new Promise((resolve, reject) => {
    const req = request(url, {
      method: 'POST',
      headers: { ...o.headers, 'content-length': String(Buffer.byteLength(o.body)) },
      lookup: o.lookup,
      agent: false,
      signal: AbortSignal.timeout(o.timeoutMs),
    });
    req.on('error', reject);
    req.on('response', (res) => {
      // The body is not ours to read: only the status is recorded.
      res.resume();
      res.on('error', () => undefined);
      resolve({ status: res.statusCode ?? 0 });
      res.destroy();
    });
    req.end(o.body);
  });
}
