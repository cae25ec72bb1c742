import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CofferClient, verifyWebhookSignature } from '@coffer/sdk';
import { describe, expect, it } from 'vitest';
import { signDelivery } from '../../apps/api/src/webhooks/webhooks.service.ts';
import { createTenant } from '../support/factories.ts';
import { listeningSuite } from '../support/suite.ts';
import type { TestApp } from '../support/test-app.ts';

let t: TestApp;
let baseUrl: string;
listeningSuite((s) => {
  ({ t, url: baseUrl } = s);
});

function countingFetch() {
  const calls: string[] = [];
  const f: typeof fetch = (input, init) => {
    calls.push(`${init?.method ?? 'GET'} ${new URL(String(input)).pathname}`);
    return fetch(input, init);
  };
  return { fetch: f, count: (what: string) => calls.filter((c) => c === what).length };
}

const until = async (check: () => Promise<boolean>, timeoutMs = 5000) => {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe('SDK read cache', () => {
  it('serves repeated reads from memory within the ttl, per version', async () => {
    const tenant = await createTenant(t.app);
    const admin = new CofferClient({ baseUrl, ...tenant.admin });
    await admin.putSecret('sandbox/c/A', 'one');
    const counter = countingFetch();
    const cached = new CofferClient({ baseUrl, ...tenant.admin, fetch: counter.fetch, cache: { ttlMs: 60_000 } });
    for (let i = 0; i < 5; i++) expect((await cached.getSecret('sandbox/c/A')).value).toBe('one');
    await Promise.all([cached.getBundle('sandbox', 'c'), cached.getBundle('sandbox', 'c')]);
    expect(counter.count('GET /v1/secrets/sandbox/c/A')).toBe(1);
    expect(counter.count('GET /v1/bundles/sandbox/c')).toBe(1);

    await admin.putSecret('sandbox/c/A', 'two');
    expect((await cached.getSecret('sandbox/c/A')).value).toBe('one'); // within ttl, no poll: still the old one
    expect((await cached.getSecret('sandbox/c/A', { version: 2 })).value).toBe('two');
    expect((await cached.getSecret('sandbox/c/A', { fresh: true })).value).toBe('two');
    cached.close();
  });

  it('replaces a cached secret and bundle after a rotation, by polling', async () => {
    const tenant = await createTenant(t.app);
    const admin = new CofferClient({ baseUrl, ...tenant.admin });
    await admin.putSecret('sandbox/c/KEY', 'before');
    const changed: string[] = [];
    const counter = countingFetch();
    const cached = new CofferClient({
      baseUrl,
      ...tenant.admin,
      fetch: counter.fetch,
      cache: { ttlMs: 60_000, refreshMs: 50, onChange: (p) => changed.push(p) },
    });
    expect((await cached.getSecret('sandbox/c/KEY')).value).toBe('before');
    expect((await cached.getBundle('sandbox', 'c')).values.KEY).toBe('before');

    await admin.rotate('sandbox/c/KEY', { value: 'after' });
    await until(async () => (await cached.getSecret('sandbox/c/KEY')).value === 'after');
    await until(async () => (await cached.getBundle('sandbox', 'c')).values.KEY === 'after');
    expect((await cached.getSecret('sandbox/c/KEY')).version).toBe(2);
    expect(changed).toEqual(expect.arrayContaining(['sandbox/c/KEY', 'sandbox/c']));

    cached.close();
    const polls = counter.count('GET /v1/secrets/sandbox/c/KEY');
    await new Promise((r) => setTimeout(r, 200));
    expect(counter.count('GET /v1/secrets/sandbox/c/KEY')).toBe(polls);
  });

  it('drops a cached value when a signed secret.rotated webhook says so', async () => {
    const tenant = await createTenant(t.app);
    const admin = new CofferClient({ baseUrl, ...tenant.admin });
    await admin.putSecret('sandbox/c/WH', 'before');
    const cached = new CofferClient({ baseUrl, ...tenant.admin, cache: { ttlMs: 3_600_000 } });
    expect((await cached.getSecret('sandbox/c/WH')).value).toBe('before');

    let signingSecret = '';
    const received: { verified: boolean; path?: string }[] = [];
    const receiver = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString('utf8')));
      req.on('end', () => {
        const verified = verifyWebhookSignature(signingSecret, req.headers['coffer-signature'] as string, body);
        const event = JSON.parse(body) as { type: string; path?: string };
        if (verified && event.type === 'secret.rotated' && event.path) cached.invalidate(event.path);
        received.push({ verified, ...(event.path ? { path: event.path } : {}) });
        res.writeHead(verified ? 204 : 400).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    const hook = await admin.call('createWebhook', {
      body: { url: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/coffer`, events: ['secret.rotated'] },
    });
    signingSecret = hook.signingSecret;

    await admin.rotate('sandbox/c/WH', { value: 'after' });
    expect((await cached.getSecret('sandbox/c/WH')).value).toBe('before');
    // Other files' deliveries to dead endpoints share the queue, so one pass may be spent on theirs.
    for (let i = 0; i < 20 && received.length === 0; i++) await t.app.jobs.webhooks.deliverDue();
    expect(received).toEqual([{ verified: true, path: 'sandbox/c/WH' }]);
    expect((await cached.getSecret('sandbox/c/WH')).value).toBe('after');
    cached.close();
    await new Promise<void>((r) => receiver.close(() => r()));
  });
});

describe('verifyWebhookSignature', () => {
  it("accepts the server's signature and refuses tampering, other secrets, stale timestamps and junk", () => {
    const secret = 'whsec-for-the-test';
    const body = JSON.stringify({ id: 'd1', type: 'secret.rotated', path: 'sandbox/x/A' });
    const now = Math.floor(Date.now() / 1000);
    const header = signDelivery(secret, now, body);
    expect(verifyWebhookSignature(secret, header, body)).toBe(true);
    expect(verifyWebhookSignature(secret, header, Buffer.from(body))).toBe(true);
    expect(verifyWebhookSignature(secret, header, body.replace('A', 'B'))).toBe(false);
    expect(verifyWebhookSignature('another-secret', header, body)).toBe(false);
    expect(verifyWebhookSignature(secret, signDelivery(secret, now - 600, body), body)).toBe(false);
    expect(verifyWebhookSignature(secret, signDelivery(secret, now - 600, body), body, 900)).toBe(true);
    expect(verifyWebhookSignature(secret, undefined, body)).toBe(false);
    expect(verifyWebhookSignature(secret, 't=abc,v1=zz', body)).toBe(false);
    expect(verifyWebhookSignature(secret, `t=${now},v1=${'0'.repeat(64)},${header.split(',')[1]}`, body)).toBe(true);
  });
});
