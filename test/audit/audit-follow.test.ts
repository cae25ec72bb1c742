import type { AuditEventView } from '@coffer/contracts';
import { CofferClient, type ServerSentEvent, serverSentEvents } from '@coffer/sdk';
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { bearer, createIdentity, createTenant, type TestTenant } from '../support/factories.ts';
import { ownerSuite } from '../support/suite.ts';
import type { TestApp } from '../support/test-app.ts';

let t: TestApp;
let owner: pg.Client;
let url: string;
ownerSuite((s) => {
  ({ t, owner } = s);
});

async function listening(): Promise<string> {
  url ||= await t.app.listen({ host: '127.0.0.1', port: 0 });
  return url;
}

/** A follow session over a real socket, read frame by frame as a browser's EventSource would. */
async function open(token: string, query: Record<string, string> = {}, headers: Record<string, string> = {}) {
  const base = await listening();
  const stop = new AbortController();
  const res = await fetch(`${base}/v1/audit/stream?${new URLSearchParams(query)}`, {
    headers: { ...bearer(token), accept: 'text/event-stream', ...headers },
    signal: stop.signal,
  });
  const frames: (ServerSentEvent & { at: number })[] = [];
  let raw = '';
  const tee = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, c) {
      raw += new TextDecoder().decode(chunk);
      c.enqueue(chunk);
    },
  });
  const done = (async () => {
    if (!res.body) return;
    try {
      for await (const e of serverSentEvents(res.body.pipeThrough(tee))) frames.push({ ...e, at: Date.now() });
    } catch {
      // aborted by the test
    }
  })();
  const events = () =>
    frames.filter((f) => f.event === 'audit').map((f) => ({ ...(JSON.parse(f.data) as AuditEventView), at: f.at }));
  const waitFor = async (pred: (e: AuditEventView) => boolean, ms = 5_000) => {
    const until = Date.now() + ms;
    for (;;) {
      const hit = events().find(pred);
      if (hit) return hit;
      if (Date.now() > until) throw new Error(`no matching event within ${ms} ms; got ${raw.slice(0, 2000)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  return { res, frames, events, waitFor, done, raw: () => raw, close: () => stop.abort() };
}

async function put(tenant: TestTenant, path: string, value: string) {
  const res = await t.app.inject({
    method: 'PUT',
    url: `/v1/secrets/${path}`,
    headers: bearer(tenant.adminToken),
    payload: { value },
  });
  expect(res.statusCode).toBeLessThan(300);
}

async function followEventsOf(tenantId: string, actorId: string): Promise<number> {
  const { rows } = await owner.query(
    `select count(*)::int as n from coffer.audit_events where tenant_id = $1 and actor_id = $2 and action like 'audit.%'`,
    [tenantId, actorId],
  );
  return (rows[0] as { n: number }).n;
}

describe('GET /v1/audit/stream (follow)', () => {
  it('delivers a committed event within a second, and never a value', async () => {
    const a = await createTenant(t.app);
    const auditor = await createIdentity(t.app, a.adminToken, { role: 'auditor' });
    const s = await open(auditor.token);
    expect(s.res.status).toBe(200);
    expect(s.res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    await new Promise((r) => setTimeout(r, 300));
    const value = `follow-value-${Date.now()}`;
    await put(a, 'sandbox/sbx-follow/FIRST', value);
    const committed = Date.now();
    const e = await s.waitFor((x) => x.resource === 'sandbox/sbx-follow/FIRST' && x.action === 'secrets.write');
    expect((e as AuditEventView & { at: number }).at - committed).toBeLessThan(1_000);
    s.close();
    await s.done;
    expect(s.raw()).not.toContain(value);
    expect(t.logs.join('\n')).not.toContain(auditor.token);
    expect(t.logs.join('\n')).not.toContain(value);
  });

  it('writes one audit event per session, however many events it delivers', async () => {
    const a = await createTenant(t.app);
    const auditor = await createIdentity(t.app, a.adminToken, { role: 'auditor' });
    const s = await open(auditor.token, { maxSeconds: '3' });
    for (let i = 0; i < 5; i++) await put(a, `sandbox/sbx-once/S${i}`, `v${i}`);
    await s.waitFor((x) => x.resource === 'sandbox/sbx-once/S4');
    await s.done; // the server ends the session after maxSeconds
    expect(s.frames.at(-1)).toMatchObject({ event: 'end' });
    expect(s.events().filter((x) => x.action === 'secrets.write')).toHaveLength(5);
    expect(await followEventsOf(a.tenant.id, auditor.identity.id)).toBe(1);
    const { rows } = await owner.query(
      `select action, details from coffer.audit_events where tenant_id = $1 and actor_id = $2 and action <> 'auth.token'`,
      [a.tenant.id, auditor.identity.id],
    );
    expect(rows).toEqual([{ action: 'audit.follow', details: expect.objectContaining({ maxSeconds: 3 }) }]);
  });

  it('resumes after Last-Event-ID, filters by action and path, and sends only the caller’s tenant', async () => {
    const a = await createTenant(t.app);
    const b = await createTenant(t.app);
    const auditor = await createIdentity(t.app, a.adminToken, { role: 'auditor' });
    await put(a, 'sandbox/sbx-r/ONE', '1');
    await put(b, 'sandbox/sbx-r/OTHER_TENANT', 'b');
    await put(a, 'sandbox/sbx-r/TWO', '2');
    const all = await open(auditor.token, { after: '0', maxSeconds: '1' });
    await all.done;
    const one = all.events().find((e) => e.resource === 'sandbox/sbx-r/ONE');
    expect(one).toBeDefined();
    expect(all.events().map((e) => e.resource)).not.toContain('sandbox/sbx-r/OTHER_TENANT');

    const resumed = await open(
      auditor.token,
      { after: '0', maxSeconds: '1', action: 'secrets.write', path: 'sandbox/sbx-r/' },
      { 'last-event-id': String(one?.seq) },
    );
    await resumed.done;
    expect(resumed.events().map((e) => e.resource)).toEqual(['sandbox/sbx-r/TWO']);
  });

  it('ends the session when the identity is disabled', async () => {
    const a = await createTenant(t.app);
    const auditor = await createIdentity(t.app, a.adminToken, { role: 'auditor' });
    const s = await open(auditor.token);
    const off = await t.app.inject({
      method: 'PATCH',
      url: `/v1/identities/${auditor.identity.id}`,
      headers: bearer(a.adminToken),
      payload: { disabled: true },
    });
    expect(off.statusCode).toBe(200);
    await s.done;
    expect(s.frames.at(-1)).toMatchObject({ event: 'end', data: '{"reason":"unauthorized"}' });
  }, 15_000);

  it('is refused to a service identity, and to a bad token, before anything is streamed', async () => {
    const a = await createTenant(t.app);
    const svc = await createIdentity(t.app, a.adminToken, {
      role: 'service',
      policies: [{ path: 'sandbox/x/*', capabilities: ['read', 'list'] }],
    });
    const denied = await open(svc.token);
    expect(denied.res.status).toBe(403);
    const bad = await open('not-a-token');
    expect(bad.res.status).toBe(401);
  });

  it('the SDK follows across sessions without losing or repeating an event', async () => {
    const a = await createTenant(t.app);
    const auditor = await createIdentity(t.app, a.adminToken, { role: 'auditor' });
    const client = new CofferClient({ baseUrl: await listening(), token: auditor.token });
    const stop = new AbortController();
    const seen: AuditEventView[] = [];
    const following = (async () => {
      for await (const e of client.followAudit({ action: 'secrets.write', maxSeconds: 1 }, { signal: stop.signal })) {
        seen.push(e);
        if (seen.length === 4) stop.abort();
      }
    })();
    await new Promise((r) => setTimeout(r, 300));
    for (let i = 0; i < 4; i++) {
      await put(a, `sandbox/sbx-sdk/N${i}`, `v${i}`);
      // Spread over more than one session of a second.
      await new Promise((r) => setTimeout(r, 450));
    }
    await following;
    expect(seen.map((e) => e.resource)).toEqual([0, 1, 2, 3].map((i) => `sandbox/sbx-sdk/N${i}`));
    expect(await followEventsOf(a.tenant.id, auditor.identity.id)).toBeGreaterThanOrEqual(2);
  }, 20_000);
});
