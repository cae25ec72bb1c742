import { CofferClient, CofferError } from '@coffer/sdk';
import { describe, expect, it } from 'vitest';
import { createIdentity, createTenant } from '../support/factories.ts';
import { listeningSuite } from '../support/suite.ts';
import type { TestApp } from '../support/test-app.ts';

let t: TestApp;
let baseUrl: string;
listeningSuite((s) => {
  ({ t, url: baseUrl } = s);
});

/** A fetch that counts what the client sends, by method and path, and otherwise is the real one. */
function countingFetch() {
  const calls: string[] = [];
  const f: typeof fetch = (input, init) => {
    const u = new URL(input instanceof Request ? input.url : String(input));
    calls.push(`${init?.method ?? 'GET'} ${u.pathname}`);
    return fetch(input, init);
  };
  return { calls, fetch: f, count: (what: string) => calls.filter((c) => c === what).length };
}

async function adminClient(extra: Partial<ConstructorParameters<typeof CofferClient>[0]> = {}) {
  const tenant = await createTenant(t.app);
  const client = new CofferClient({ baseUrl, ...tenant.admin, ...extra });
  return { tenant, client };
}

describe('SDK: tokens', () => {
  it('logs in once, reuses the token, and renews it shortly before it expires', async () => {
    let clock = Date.now();
    const counter = countingFetch();
    const tokens: number[] = [];
    const { client } = await adminClient({
      fetch: counter.fetch,
      now: () => clock,
      onToken: (tk) => tokens.push(tk.expiresAt),
    });
    await client.whoami();
    await client.whoami();
    expect(counter.count('POST /v1/auth/token')).toBe(1);

    clock += 10 * 60_000; // 10 of the token's 15 minutes
    await client.whoami();
    expect(counter.count('POST /v1/auth/token')).toBe(1);

    clock += 4 * 60_000 + 40_000; // 20 s before expiry: inside the renewal margin
    await client.whoami();
    expect(counter.count('POST /v1/auth/token')).toBe(2);
    expect(tokens).toHaveLength(2);
    expect((tokens[1] ?? 0) - (tokens[0] ?? 0)).toBeGreaterThanOrEqual(14 * 60_000);
  });

  it('logs in again once when the server refuses a token it was given', async () => {
    const counter = countingFetch();
    const { client } = await adminClient({ token: 'not.a.valid-token', fetch: counter.fetch });
    expect((await client.whoami()).role).toBe('admin');
    expect(counter.count('GET /v1/auth/whoami')).toBe(2);
    expect(counter.count('POST /v1/auth/token')).toBe(1);
  });

  it('reports an expired token without credentials as unauthorized, before sending anything', async () => {
    const counter = countingFetch();
    const client = new CofferClient({ baseUrl, token: 'x', tokenExpiresAt: Date.now() - 1000, fetch: counter.fetch });
    await expect(client.whoami()).rejects.toMatchObject({ code: 'unauthorized', status: 401 });
    expect(counter.calls).toEqual([]);
  });
});

describe('SDK: errors', () => {
  it('throws one CofferError with the server code, status and request id for each failure', async () => {
    const { tenant, client } = await adminClient();
    const catchIt = (p: Promise<unknown>) =>
      p.then(
        () => null,
        (e: unknown) => e as CofferError,
      );

    const missing = await catchIt(client.getSecret('sandbox/sbx-e/NOPE'));
    expect(missing).toBeInstanceOf(CofferError);
    expect(missing).toMatchObject({ code: 'not_found', status: 404 });
    expect(missing?.requestId).toMatch(/.+/);

    await client.putSecret('sandbox/sbx-e/URL', 'https://example.com', { format: 'url' });
    const conflict = await catchIt(client.putSecret('sandbox/sbx-e/URL', 'https://example.org', { ifVersion: 0 }));
    expect(conflict).toMatchObject({ code: 'conflict', status: 409 });

    // Any scheme with a host is a url now (redis://, amqp://): a bare word is not.
    const secretValue = 'not-a-url-at-all';
    const bad = await catchIt(client.putSecret('sandbox/sbx-e/URL', secretValue));
    expect(bad).toMatchObject({ code: 'unprocessable', status: 422 });
    expect(bad?.details[0]?.path).toBe('body.value');
    expect(bad?.message).not.toContain(secretValue);

    const svc = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      policies: [{ path: 'sandbox/sbx-e/*', capabilities: ['read'] }],
    });
    const service = new CofferClient({ baseUrl, clientId: svc.identity.clientId, clientSecret: svc.clientSecret });
    expect((await service.getSecret('sandbox/sbx-e/URL')).value).toBe('https://example.com');
    expect(await catchIt(service.putSecret('sandbox/sbx-e/URL', 'https://x.example'))).toMatchObject({
      code: 'forbidden',
      status: 403,
    });

    const local = await catchIt(client.getSecret('sandbox/only-two'));
    expect(local).toMatchObject({ code: 'validation_failed', status: 0, requestId: null });
  });
});

describe('SDK: named methods', () => {
  it('lists across pages, both as pages and as one stream of items', async () => {
    const { client } = await adminClient();
    for (const n of ['A', 'B', 'C', 'D', 'E']) await client.putSecret(`shared/grp/${n}`, n.toLowerCase());
    const pages = [];
    for await (const page of client.listSecrets({ kind: 'shared', owner: 'grp', limit: 2 }).pages())
      pages.push(page.items.length);
    expect(pages).toEqual([2, 2, 1]);
    const names = (await client.listSecrets({ kind: 'shared', owner: 'grp', limit: 2 }).all()).map((s) => s.name);
    expect(names).toEqual(['A', 'B', 'C', 'D', 'E']);
  });

  it('reads and writes bundles, rotates, deletes and restores by path', async () => {
    const { client } = await adminClient();
    const written = await client.writeBundle('sandbox', 'sbx-b', { set: { A: { value: '1' }, B: { value: '2' } } });
    expect(written.versions).toEqual({ A: 1, B: 1 });
    expect(await client.getBundle('sandbox', 'sbx-b')).toEqual({
      values: { A: '1', B: '2' },
      versions: { A: 1, B: 1 },
    });
    expect((await client.getBundle('sandbox/sbx-b')).values.A).toBe('1');

    const rotated = await client.rotate('sandbox/sbx-b/A', { value: '1b' });
    expect(rotated.version).toBe(2);
    expect((await client.getSecret('sandbox/sbx-b/A', { version: 'previous' })).value).toBe('1');
    expect((await client.secretVersions('sandbox/sbx-b/A')).items.map((v) => v.state)).toEqual(['current', 'previous']);

    await client.deleteSecret('sandbox/sbx-b/B');
    await expect(client.getSecret('sandbox/sbx-b/B')).rejects.toMatchObject({ code: 'not_found' });
    expect((await client.restoreSecret('sandbox/sbx-b/B')).version).toBe(1);
    expect((await client.whoami()).role).toBe('admin');
  });

  it('streams the audit export as lines, and call() returns the whole text of a produces route', async () => {
    const { client } = await adminClient();
    await client.putSecret('sandbox/sbx-x/A', 'value-not-in-the-log');
    const lines: string[] = [];
    for await (const line of await client.exportAudit()) lines.push(line);
    const events = lines.map((l) => JSON.parse(l) as { action: string; resource: string | null });
    expect(events.some((e) => e.action === 'secrets.write' && e.resource === 'sandbox/sbx-x/A')).toBe(true);
    expect(lines.join('\n')).not.toContain('value-not-in-the-log');

    const csv = await client.call('exportAudit', { query: { format: 'csv' } });
    expect(csv.split('\n')[0]).toContain('action');
    expect((await client.verifyAudit()).ok).toBe(true);
  });
});
