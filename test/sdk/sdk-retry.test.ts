import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CofferClient } from '@coffer/sdk';
import { describe, expect, it } from 'vitest';
import { createTenant } from '../support/factories.ts';
import { listeningSuite } from '../support/suite.ts';
import type { TestApp } from '../support/test-app.ts';

let t: TestApp;
let realUrl: string;
listeningSuite((s) => {
  ({ t, url: realUrl } = s);
});

type Fault = '503' | 'lose-response' | 'drop';

/**
 * A fake network in front of the real server: each request is forwarded unless a fault is queued for it —
 * answer 503 without forwarding, forward and then cut the connection before the answer (the write happened, the
 * client cannot know), or cut it without forwarding.
 */
async function faultyProxy(target: string) {
  const faults: { method: string; path: RegExp; fault: Fault }[] = [];
  const hits: string[] = [];
  const body = (req: IncomingMessage) =>
    new Promise<Buffer>((resolve) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => resolve(Buffer.concat(chunks)));
    });
  const server: Server = createServer(async (req, res) => {
    const path = req.url ?? '/';
    hits.push(`${req.method} ${path.split('?')[0]}`);
    const i = faults.findIndex((f) => f.method === req.method && f.path.test(path));
    const fault = i >= 0 ? faults.splice(i, 1)[0]?.fault : undefined;
    const payload = await body(req);
    if (fault === '503') {
      res.writeHead(503, { 'content-type': 'application/json', 'x-request-id': 'proxy-503' });
      res.end(JSON.stringify({ error: { code: 'unavailable', message: 'try again', requestId: 'proxy-503' } }));
      return;
    }
    if (fault === 'drop') {
      req.socket.destroy();
      return;
    }
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) {
      if (typeof v === 'string' && !['host', 'connection', 'content-length'].includes(k)) headers[k] = v;
    }
    const upstream = await fetch(target + path, {
      method: req.method ?? 'GET',
      headers,
      ...(payload.length > 0 ? { body: payload } : {}),
    });
    const text = await upstream.text();
    if (fault === 'lose-response') {
      req.socket.destroy();
      return;
    }
    res.writeHead(upstream.status, Object.fromEntries(upstream.headers));
    res.end(text);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    hits,
    fail: (method: string, path: RegExp, fault: Fault, times = 1) => {
      for (let n = 0; n < times; n++) faults.push({ method, path, fault });
    },
    count: (what: string) => hits.filter((h) => h === what).length,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

async function setup() {
  const proxy = await faultyProxy(realUrl);
  const tenant = await createTenant(t.app);
  const client = new CofferClient({ baseUrl: proxy.url, ...tenant.admin, backoffMs: 5 });
  const direct = new CofferClient({ baseUrl: realUrl, ...tenant.admin });
  return { proxy, client, direct };
}

describe('SDK retries', () => {
  it('retries a GET on 503 and on a dropped connection, then gives up with the last error', async () => {
    const { proxy, client, direct } = await setup();
    await direct.putSecret('sandbox/r/A', 'a');
    proxy.fail('GET', /\/v1\/secrets\/sandbox\/r\/A/, '503', 2);
    expect((await client.getSecret('sandbox/r/A')).value).toBe('a');
    expect(proxy.count('GET /v1/secrets/sandbox/r/A')).toBe(3);

    proxy.fail('GET', /\/v1\/secrets\/sandbox\/r\/A/, 'drop');
    expect((await client.getSecret('sandbox/r/A')).value).toBe('a');

    proxy.fail('GET', /\/v1\/secrets\/sandbox\/r\/A/, '503', 3);
    await expect(client.getSecret('sandbox/r/A')).rejects.toMatchObject({
      code: 'unavailable',
      status: 503,
      requestId: 'proxy-503',
    });
    await proxy.close();
  });

  it('never repeats a POST without a guard: an unguarded bundle write is sent once', async () => {
    const { proxy, client, direct } = await setup();
    proxy.fail('POST', /\/v1\/bundles\/sandbox\/r$/, '503');
    await expect(client.writeBundle('sandbox', 'r', { set: { A: { value: '1' } } })).rejects.toMatchObject({
      code: 'unavailable',
    });
    expect(proxy.count('POST /v1/bundles/sandbox/r')).toBe(1);
    await expect(direct.getSecret('sandbox/r/A')).rejects.toMatchObject({ code: 'not_found' });
    await proxy.close();
  });

  it('retries a compare-and-set bundle write whose answer was lost, and recognises that it was applied', async () => {
    const { proxy, client, direct } = await setup();
    proxy.fail('POST', /\/v1\/bundles\/sandbox\/r$/, 'lose-response');
    const res = await client.writeBundle('sandbox', 'r', {
      set: { A: { value: '1', ifVersion: 0 }, B: { value: '2', ifVersion: 0 } },
    });
    expect(res.versions).toEqual({ A: 1, B: 1 });
    expect(proxy.count('POST /v1/bundles/sandbox/r')).toBe(2);
    expect((await direct.secretVersions('sandbox/r/A')).items).toHaveLength(1);
    await proxy.close();
  });

  it('retries a compare-and-set PUT whose answer was lost without reporting its own write as a conflict', async () => {
    const { proxy, client, direct } = await setup();
    await direct.putSecret('sandbox/r/P', 'one');
    proxy.fail('PUT', /\/v1\/secrets\/sandbox\/r\/P/, 'lose-response');
    const meta = await client.putSecret('sandbox/r/P', 'two', { ifVersion: 1 });
    expect(meta.version).toBe(2);
    expect(proxy.count('PUT /v1/secrets/sandbox/r/P')).toBe(2);
    expect((await direct.getSecret('sandbox/r/P')).value).toBe('two');
    await proxy.close();
  });

  it('retries a rotation only when the version did not move, so it never rotates twice', async () => {
    const { proxy, client, direct } = await setup();
    await direct.putSecret('sandbox/r/K', 'v1');

    // 503 before the server saw it: the version did not move, the rotation is sent again and happens once.
    proxy.fail('POST', /\/rotate$/, '503');
    expect((await client.rotate('sandbox/r/K', { value: 'v2' })).version).toBe(2);
    expect(proxy.count('POST /v1/secrets/sandbox/r/K/rotate')).toBe(2);

    // The rotation happened but its answer was lost: the SDK sees version 3 holding its value and reports success.
    proxy.fail('POST', /\/rotate$/, 'lose-response');
    expect((await client.rotate('sandbox/r/K', { value: 'v3' })).version).toBe(3);
    expect(proxy.count('POST /v1/secrets/sandbox/r/K/rotate')).toBe(3);

    // Same with a generated value: it cannot tell whose rotation moved the version, so it refuses to rotate again.
    await direct.patchSecret('sandbox/r/K', {
      rotation: { intervalDays: 30, generator: { length: 32, charset: 'hex' } },
    });
    proxy.fail('POST', /\/rotate$/, 'lose-response');
    await expect(client.rotate('sandbox/r/K')).rejects.toMatchObject({
      code: 'conflict',
      message: expect.stringContaining('may or may not have happened'),
    });
    expect(proxy.count('POST /v1/secrets/sandbox/r/K/rotate')).toBe(4);
    expect((await direct.secretVersions('sandbox/r/K')).items[0]?.version).toBe(4);
    await proxy.close();
  });
});

describe('SDK retries against a fake server', () => {
  it('backs off between attempts and honours Retry-After on 429', async () => {
    const times: number[] = [];
    const server = createServer((_req, res) => {
      times.push(Date.now());
      if (times.length === 1) {
        res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '1' });
        res.end(JSON.stringify({ error: { code: 'rate_limited', message: 'slow down', requestId: 'r1' } }));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status: 'ok' }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const client = new CofferClient({
      baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      backoffMs: 1,
    });
    expect(await client.call('health')).toEqual({ status: 'ok' });
    expect(times).toHaveLength(2);
    expect((times[1] ?? 0) - (times[0] ?? 0)).toBeGreaterThanOrEqual(900);
    await new Promise<void>((r) => server.close(() => r()));
  });
});
