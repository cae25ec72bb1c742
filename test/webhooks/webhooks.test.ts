import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { CreateWebhookResponse, SecretMetadata, WebhookDeliveries, WebhookList } from '@coffer/contracts';
import type pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MasterKeyring } from '../../apps/api/src/crypto/keyring.ts';
import type { Resolve } from '../../apps/api/src/webhooks/url-policy.ts';
import { webhookQueries } from '../../apps/api/src/webhooks/webhooks.queries.ts';
import { webhookService } from '../../apps/api/src/webhooks/webhooks.service.ts';
import { auditRowsFor } from '../support/audit.ts';
import { createIdentity, createTenant, rootToken } from '../support/factories.ts';
import { eventually, makeDue, type OpsApi, opsApi, secretIdOf } from '../support/ops.ts';
import { expectEmpty, expectError, expectOk, ownerClient, requestIdOf, sender } from '../support/secrets.ts';
import { tenantCtx } from '../support/suite.ts';
import { createTestApp, type TestApp } from '../support/test-app.ts';
import { type ReceivedDelivery, startReceiver, verifySignature } from '../support/webhook-receiver.ts';

/**
 * Webhooks, delivered by driving `app.jobs.webhooks.deliverDue()` by hand. The delivery worker claims due
 * deliveries of every tenant; only this file creates webhooks that fire, so what it delivers is this file's.
 */

let t: TestApp;
let owner: pg.Client;
let root: string;
const receivers: { close: () => Promise<void> }[] = [];

beforeAll(async () => {
  t = await createTestApp();
  owner = await ownerClient();
  root = await rootToken(t.app);
});
afterAll(async () => {
  for (const r of receivers) await r.close();
  await owner.end();
  await t.close();
});

async function receiver() {
  const r = await startReceiver();
  receivers.push(r);
  return r;
}

async function deliveriesOf(ops: OpsApi, webhookId: string) {
  return expectOk(await ops.deliveries(webhookId), 200, WebhookDeliveries).items;
}

/** Runs delivery passes until `received` holds `count` requests. */
async function deliverUntil(app: TestApp, received: ReceivedDelivery[], count: number): Promise<void> {
  await eventually(
    async () => {
      await app.app.jobs.webhooks.deliverDue();
      return received.length >= count;
    },
    5_000,
    `${count} webhook deliveries`,
  );
}

async function nextAttemptInSeconds(deliveryId: string): Promise<number> {
  const { rows } = await owner.query<{ s: number }>(
    'select extract(epoch from next_attempt_at - now())::float8 as s from coffer.webhook_deliveries where id = $1',
    [deliveryId],
  );
  return rows[0]?.s ?? Number.NaN;
}

async function makeAttemptDue(deliveryId: string, attempts?: number): Promise<void> {
  await owner.query(
    `update coffer.webhook_deliveries set next_attempt_at = now() - interval '1 second',
       attempts = coalesce($2, attempts) where id = $1`,
    [deliveryId, attempts ?? null],
  );
}

describe('webhook deliveries', () => {
  it('delivers a rotation to a loopback receiver, signed with HMAC-SHA256 over timestamp and body, once', async () => {
    const { tenant, api, ops } = await tenantCtx(t, root);
    const rx = await receiver();
    const created = await ops.createWebhook({ url: rx.url, events: ['secret.rotated'] });
    const { webhook, signingSecret } = expectOk(created, 201, CreateWebhookResponse);
    expect(webhook).toMatchObject({ url: rx.url, events: ['secret.rotated'], disabled: false });
    expect(signingSecret).toMatch(/^coffer_whs_[A-Za-z0-9_-]{43}$/);
    // The secret is shown once: never listed, never audited.
    expect(expectOk(await ops.webhooks(), 200, WebhookList).items).toEqual([webhook]);
    expect(JSON.stringify(await auditRowsFor(owner, requestIdOf(created)))).not.toContain(signingSecret);
    expect(t.logs.join('\n')).not.toContain(signingSecret);

    await api.put('sandbox/app/KEY', { value: 'value-one' });
    expectOk(await ops.rotate('sandbox/app/KEY', { value: 'value-two' }), 200, SecretMetadata);
    // Nothing is sent before the worker runs: the delivery was queued with the rotation.
    expect(rx.received).toHaveLength(0);
    await deliverUntil(t, rx.received, 1);
    await t.app.jobs.webhooks.deliverDue();
    expect(rx.received).toHaveLength(1);

    const got = rx.received[0] as ReceivedDelivery;
    const sig = verifySignature(signingSecret, got.headers['coffer-signature'], got.rawBody);
    expect(sig.ok).toBe(true);
    expect(got.headers['coffer-signature']).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
    // Another secret, or an altered body, does not verify.
    expect(verifySignature(`${signingSecret}x`, got.headers['coffer-signature'], got.rawBody).ok).toBe(false);
    expect(verifySignature(signingSecret, got.headers['coffer-signature'], got.rawBody.replace('2', '3')).ok).toBe(
      false,
    );
    expect(got.headers['content-type']).toBe('application/json');
    expect(got.headers['coffer-event']).toBe('secret.rotated');
    const body = JSON.parse(got.rawBody) as Record<string, unknown>;
    expect(body).toEqual({
      id: got.headers['coffer-delivery'],
      type: 'secret.rotated',
      tenantId: tenant.tenant.id,
      path: 'sandbox/app/KEY',
      fromVersion: 1,
      toVersion: 2,
      trigger: 'manual',
      rotatedAt: expect.any(String),
    });
    expect(got.rawBody).not.toContain('value-');

    const [delivery, ...others] = await deliveriesOf(ops, webhook.id);
    expect(others).toEqual([]);
    expect(delivery).toMatchObject({
      id: body.id,
      event: 'secret.rotated',
      status: 'delivered',
      attempts: 1,
      lastStatusCode: 200,
      lastError: null,
    });
    expect(delivery?.deliveredAt).toBeTypeOf('string');
  });

  it("tells subscribers when a version is revoked, and what a deployment's revocation did, never a value", async () => {
    const { tenant, api, ops } = await tenantCtx(t, root);
    const rx = await receiver();
    expectOk(
      await ops.createWebhook({ url: rx.url, events: ['secret.version_revoked', 'deployment.revoked'] }),
      201,
      CreateWebhookResponse,
    );
    const admin = sender(t.app, tenant.adminToken);
    await api.put('sandbox/app/KEY', { value: 'value-one' });
    expectOk(await ops.rotate('sandbox/app/KEY', { value: 'value-two' }), 200, SecretMetadata);
    const cut = await admin('POST', '/v1/secrets/sandbox/app/KEY/versions/1/revoke', { force: true });
    expect(cut.statusCode, cut.body).toBe(200);
    await deliverUntil(t, rx.received, 1);
    const first = rx.received[0];
    expect(first?.headers['coffer-event']).toBe('secret.version_revoked');
    expect(JSON.parse(first?.rawBody ?? '{}')).toEqual({
      id: first?.headers['coffer-delivery'],
      type: 'secret.version_revoked',
      tenantId: tenant.tenant.id,
      path: 'sandbox/app/KEY',
      version: 1,
      forced: true,
      revokedAt: expect.any(String),
    });

    // A deployment that generated a service secret for the local tier, then its revocation.
    expect(
      (await admin('PUT', '/v1/secrets/sandbox/web/SESSION_KEY', { value: 'value-three', class: 'service' }))
        .statusCode,
    ).toBe(201);
    const made = await admin('POST', '/v1/deployments', {
      name: 'laptop',
      environment: 'default',
      tier: 'local',
      bundles: ['sandbox/web'],
    });
    expect(made.statusCode, made.body).toBe(201);
    const { id, generated } = made.json() as { id: string; generated: Record<string, string> };
    const revoked = await admin('POST', `/v1/deployments/${id}/revoke`, { notes: 'laptop lost' });
    expect(revoked.statusCode, revoked.body).toBe(200);
    await deliverUntil(t, rx.received, 3);
    const bodies = rx.received.slice(1).map((r) => JSON.parse(r.rawBody) as Record<string, unknown>);
    expect(bodies.map((b) => b.type).sort()).toEqual(['deployment.revoked', 'secret.version_revoked']);
    expect(bodies.find((b) => b.type === 'secret.version_revoked')).toMatchObject({
      path: 'sandbox/web/SESSION_KEY',
      version: 2,
      forced: true,
      deployment: id,
    });
    expect(bodies.find((b) => b.type === 'deployment.revoked')).toMatchObject({
      tenantId: tenant.tenant.id,
      deployment: id,
      name: 'laptop',
      environment: 'default',
      tier: 'local',
      rotated: [{ path: 'sandbox/web/SESSION_KEY', fromVersion: 2, toVersion: 3 }],
      revokedVersions: [{ path: 'sandbox/web/SESSION_KEY', version: 2 }],
      leasesRevoked: 0,
    });
    const all = rx.received.map((r) => r.rawBody).join('\n');
    for (const secret of ['value-one', 'value-two', 'value-three', ...Object.values(generated)]) {
      expect(all).not.toContain(secret);
    }
  });

  it('records a failed attempt, waits a backoff, retries, and records the delivery', async () => {
    const { api, ops } = await tenantCtx(t, root);
    const rx = await receiver();
    const { webhook, signingSecret } = expectOk(
      await ops.createWebhook({ url: rx.url, events: ['secret.rotated'] }),
      201,
      CreateWebhookResponse,
    );
    await api.put('sandbox/app/KEY', { value: 'v1' });
    await ops.rotate('sandbox/app/KEY', { value: 'v2' });
    rx.respondWith(500);
    await deliverUntil(t, rx.received, 1);

    const [pending] = await deliveriesOf(ops, webhook.id);
    expect(pending).toMatchObject({ status: 'pending', attempts: 1, lastStatusCode: 500, lastError: 'HTTP 500' });
    expect(pending?.deliveredAt).toBeNull();
    // First backoff: about 10 s (± 25 %).
    const wait = await nextAttemptInSeconds(pending?.id ?? '');
    expect(wait).toBeGreaterThan(7);
    expect(wait).toBeLessThan(13);
    // Not retried before then.
    await t.app.jobs.webhooks.deliverDue();
    expect(rx.received).toHaveLength(1);

    await makeAttemptDue(pending?.id ?? '');
    await deliverUntil(t, rx.received, 2);
    const [delivered] = await deliveriesOf(ops, webhook.id);
    expect(delivered).toMatchObject({ id: pending?.id, status: 'delivered', attempts: 2, lastStatusCode: 200 });
    expect(delivered?.lastError).toBeNull();
    // Both attempts carry the same delivery id and event, each signed for its own timestamp.
    for (const r of rx.received) {
      expect(r.headers['coffer-delivery']).toBe(pending?.id);
      expect(verifySignature(signingSecret, r.headers['coffer-signature'], r.rawBody).ok).toBe(true);
    }
    expect(rx.received[0]?.rawBody).toBe(rx.received[1]?.rawBody);
  });

  it('gives up after the last attempt, and records an unreachable target', async () => {
    const { api, ops } = await tenantCtx(t, root);
    const rx = await receiver();
    const { webhook } = expectOk(
      await ops.createWebhook({ url: rx.url, events: ['secret.rotated'] }),
      201,
      CreateWebhookResponse,
    );
    await api.put('sandbox/app/KEY', { value: 'v1' });
    await ops.rotate('sandbox/app/KEY', { value: 'v2' });
    const [queued] = await deliveriesOf(ops, webhook.id);
    // Seven attempts already spent: the eighth is the last.
    await makeAttemptDue(queued?.id ?? '', 7);
    rx.respondWith(503);
    await deliverUntil(t, rx.received, 1);
    const [failed] = await deliveriesOf(ops, webhook.id);
    expect(failed).toMatchObject({ status: 'failed', attempts: 8, lastStatusCode: 503, lastError: 'HTTP 503' });
    await makeAttemptDue(queued?.id ?? '');
    await t.app.jobs.webhooks.deliverDue();
    expect(rx.received).toHaveLength(1);

    // A target nobody listens on: the error is recorded, with no status code, and the delivery waits to retry.
    const closed = http.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const dead = expectOk(
      await ops.createWebhook({ url: `http://127.0.0.1:${port}/gone`, events: ['secret.rotated'] }),
      201,
      CreateWebhookResponse,
    ).webhook;
    await ops.rotate('sandbox/app/KEY', { value: 'v3' });
    await eventually(async () => {
      await t.app.jobs.webhooks.deliverDue();
      return (await deliveriesOf(ops, dead.id))[0]?.attempts === 1;
    });
    const [unreachable] = await deliveriesOf(ops, dead.id);
    expect(unreachable).toMatchObject({ status: 'pending', attempts: 1, lastStatusCode: null });
    expect(unreachable?.lastError).toEqual(expect.any(String));
    expect(await nextAttemptInSeconds(unreachable?.id ?? '')).toBeGreaterThan(5);
  });

  it('sends only the events a webhook subscribed to; a data-key rotation carries the new key version', async () => {
    const { tenant, api, ops } = await tenantCtx(t, root);
    const rotations = await receiver();
    const keys = await receiver();
    const r = expectOk(
      await ops.createWebhook({ url: rotations.url, events: ['secret.rotated'] }),
      201,
      CreateWebhookResponse,
    );
    const k = expectOk(await ops.createWebhook({ url: keys.url, events: ['key.rotated'] }), 201, CreateWebhookResponse);
    await api.put('sandbox/app/KEY', { value: 'v1' });
    expect((await ops.rotateKey()).statusCode).toBe(202);
    await t.app.jobs.rekey.rekey(tenant.tenant.id);
    await ops.rotate('sandbox/app/KEY', { value: 'v2' });
    await deliverUntil(t, keys.received, 1);
    await deliverUntil(t, rotations.received, 1);
    await t.app.jobs.webhooks.deliverDue();
    expect(rotations.received.map((d) => d.headers['coffer-event'])).toEqual(['secret.rotated']);
    expect(keys.received.map((d) => d.headers['coffer-event'])).toEqual(['key.rotated']);
    const keyEvent = keys.received[0] as ReceivedDelivery;
    expect(verifySignature(k.signingSecret, keyEvent.headers['coffer-signature'], keyEvent.rawBody).ok).toBe(true);
    expect(JSON.parse(keyEvent.rawBody)).toMatchObject({
      type: 'key.rotated',
      tenantId: tenant.tenant.id,
      keyVersion: 2,
      retiring: [1],
    });
    // Each webhook has its own secret.
    expect(r.signingSecret).not.toBe(k.signingSecret);
    const rotEvent = rotations.received[0] as ReceivedDelivery;
    expect(verifySignature(k.signingSecret, rotEvent.headers['coffer-signature'], rotEvent.rawBody).ok).toBe(false);
  });

  it('tells of scheduled rotations, and of scheduled rotations that failed', async () => {
    const { tenant, api, ops } = await tenantCtx(t, root);
    const tid = tenant.tenant.id;
    const rx = await receiver();
    const { signingSecret } = expectOk(
      await ops.createWebhook({ url: rx.url, events: ['secret.rotated', 'secret.rotation_failed'] }),
      201,
      CreateWebhookResponse,
    );
    await api.put('sandbox/sched/GOOD', {
      value: 'g1',
      rotation: { intervalDays: 1, generator: { length: 20, charset: 'base64url' } },
    });
    // Built-in hex needs an even number of digits: this generator can never satisfy the format.
    await api.put('sandbox/sched/BAD', {
      value: 'abcd',
      format: 'hex',
      rotation: { intervalDays: 1, generator: { length: 31, charset: 'hex' } },
    });
    await makeDue(owner, tid, [
      await secretIdOf(owner, tid, 'sandbox/sched/GOOD'),
      await secretIdOf(owner, tid, 'sandbox/sched/BAD'),
    ]);
    // The scheduler is shared with other files' tests; a pass may fail on their secrets, so run until ours went.
    await eventually(async () => {
      await t.app.jobs.rotation.runDue().catch(() => undefined);
      await t.app.jobs.webhooks.deliverDue();
      return rx.received.length >= 2;
    });
    for (const d of rx.received)
      expect(verifySignature(signingSecret, d.headers['coffer-signature'], d.rawBody).ok).toBe(true);
    const bodies = rx.received
      .map((d) => JSON.parse(d.rawBody) as Record<string, unknown>)
      .sort((x, y) => String(x.type).localeCompare(String(y.type)));
    expect(bodies).toEqual([
      {
        id: expect.any(String),
        type: 'secret.rotated',
        tenantId: tid,
        path: 'sandbox/sched/GOOD',
        fromVersion: 1,
        toVersion: 2,
        trigger: 'scheduler',
        rotatedAt: expect.any(String),
      },
      {
        id: expect.any(String),
        type: 'secret.rotation_failed',
        tenantId: tid,
        path: 'sandbox/sched/BAD',
        reason: 'unprocessable',
      },
    ]);
  });

  it('deleting a webhook drops its pending deliveries; another tenant can neither see nor touch it', async () => {
    const a = await tenantCtx(t, root);
    const b = await tenantCtx(t, root);
    const rx = await receiver();
    const { webhook } = expectOk(
      await a.ops.createWebhook({ url: rx.url, events: ['secret.rotated'] }),
      201,
      CreateWebhookResponse,
    );
    await a.api.put('sandbox/app/KEY', { value: 'v1' });
    await a.ops.rotate('sandbox/app/KEY', { value: 'v2' });
    expect(await deliveriesOf(a.ops, webhook.id)).toHaveLength(1);

    expect(expectOk(await b.ops.webhooks(), 200, WebhookList).items).toEqual([]);
    expectError(await b.ops.deliveries(webhook.id), 404, 'not_found');
    expectError(await b.ops.deleteWebhook(webhook.id), 404, 'not_found');
    expect(expectOk(await a.ops.webhooks(), 200, WebhookList).items).toHaveLength(1);

    expectEmpty(await a.ops.deleteWebhook(webhook.id));
    expectError(await a.ops.deliveries(webhook.id), 404, 'not_found');
    expectError(await a.ops.deleteWebhook(webhook.id), 404, 'not_found');
    const { rows } = await owner.query('select 1 from coffer.webhook_deliveries where webhook_id = $1', [webhook.id]);
    expect(rows).toEqual([]);
    await t.app.jobs.webhooks.deliverDue();
    expect(rx.received).toEqual([]);
  });

  it('only a tenant admin manages webhooks', async () => {
    const { tenant, ops } = await tenantCtx(t, root);
    const auditor = await createIdentity(t.app, tenant.adminToken, { role: 'auditor' });
    const svc = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      policies: [{ path: '**', capabilities: ['read', 'write', 'rotate', 'list', 'delete'] }],
    });
    const body = { url: 'http://127.0.0.1:9/x', events: ['secret.rotated'] };
    const { webhook } = expectOk(await ops.createWebhook(body), 201, CreateWebhookResponse);
    for (const token of [auditor.token, svc.token, root]) {
      const as = opsApi(t.app, token);
      expectError(await as.createWebhook(body), 403, 'forbidden');
      expectError(await as.webhooks(), 403, 'forbidden');
      expectError(await as.deliveries(webhook.id), 403, 'forbidden');
      expectError(await as.deleteWebhook(webhook.id), 403, 'forbidden');
    }
    expectError(await opsApi(t.app, null).createWebhook(body), 401, 'unauthorized');
    expectError(
      await ops.createWebhook({ url: 'ftp://example.com/x', events: ['secret.rotated'] }),
      400,
      'validation_failed',
    );
    expectError(await ops.createWebhook({ url: 'http://127.0.0.1:9/x', events: [] }), 400, 'validation_failed');
    expectError(
      await ops.createWebhook({ url: 'http://127.0.0.1:9/x', events: ['secret.stolen'] }),
      400,
      'validation_failed',
    );
    expectError(
      await ops.createWebhook({ url: 'http://127.0.0.1:9/x', events: ['key.rotated', 'key.rotated'] }),
      400,
      'validation_failed',
    );
    expect(expectOk(await ops.webhooks(), 200, WebhookList).items).toHaveLength(1);
  });
});

describe('the SSRF guard (private targets not allowed)', () => {
  let strict: TestApp;
  beforeAll(async () => {
    strict = await createTestApp({ COFFER_WEBHOOK_ALLOW_PRIVATE: 'false' });
  });
  afterAll(async () => {
    await strict.close();
  });

  it('refuses loopback, private, link-local and credential-carrying URLs at creation with 400', async () => {
    const tenant = await createTenant(strict.app, await rootToken(strict.app));
    const ops = opsApi(strict.app, tenant.adminToken);
    const refused = [
      'https://127.0.0.1:8443/hook',
      'https://127.1/hook',
      'https://2130706433/hook',
      'https://localhost/hook',
      'https://api.localhost/hook',
      'https://10.1.2.3/hook',
      'https://172.16.5.4/hook',
      'https://192.168.0.10/hook',
      'https://169.254.169.254/latest/meta-data',
      'https://100.64.0.1/hook',
      'https://0.0.0.0/hook',
      'https://[::1]/hook',
      'https://[fd00::1]/hook',
      'https://[fe80::1]/hook',
      'http://127.0.0.1:8080/hook',
      // A made-up credential: the URL is refused for carrying one at all.
      // secretlint-disable-next-line
      'https://user:pass@93.184.215.14/hook',
    ];
    for (const url of refused) {
      const err = expectError(await ops.createWebhook({ url, events: ['secret.rotated'] }), 400, 'validation_failed');
      expect({ url, details: err.details?.[0]?.path }).toEqual({ url, details: 'body.url' });
    }
    expect(expectOk(await ops.webhooks(), 200, WebhookList).items).toEqual([]);
    // A public address is fine.
    expectOk(
      await ops.createWebhook({ url: 'https://93.184.215.14/hook', events: ['secret.rotated'] }),
      201,
      CreateWebhookResponse,
    );

    // Plain http, when only https is allowed (the production default).
    const httpsOnly = await createTestApp({
      COFFER_WEBHOOK_ALLOW_PRIVATE: 'false',
      COFFER_WEBHOOK_ALLOW_HTTP: 'false',
    });
    try {
      const admin = (await createTenant(httpsOnly.app, await rootToken(httpsOnly.app))).adminToken;
      const err = expectError(
        await opsApi(httpsOnly.app, admin).createWebhook({ url: 'http://93.184.215.14/hook', events: ['key.rotated'] }),
        400,
        'validation_failed',
      );
      expect(err.details).toEqual([{ path: 'body.url', message: 'must use https' }]);
    } finally {
      await httpsOnly.close();
    }
  });

  it('checks again at delivery time: a private target is not called', async () => {
    const { api, ops } = await tenantCtx(t, root);
    const rx = await receiver();
    // Created while private targets were allowed (another instance), delivered by a strict one.
    const { webhook } = expectOk(
      await ops.createWebhook({ url: rx.url, events: ['secret.rotated'] }),
      201,
      CreateWebhookResponse,
    );
    await api.put('sandbox/app/KEY', { value: 'v1' });
    await ops.rotate('sandbox/app/KEY', { value: 'v2' });
    await eventually(async () => {
      await strict.app.jobs.webhooks.deliverDue();
      return (await deliveriesOf(ops, webhook.id))[0]?.attempts === 1;
    });
    expect(rx.received).toEqual([]);
    const [refused] = await deliveriesOf(ops, webhook.id);
    expect(refused).toMatchObject({ status: 'pending', attempts: 1, lastStatusCode: null });
    expect(refused?.lastError).toMatch(/^refused: the URL must not point at/);
  });

  it('DNS rebinding: a webhook name that answers a public address, then 127.0.0.1, is never delivered to loopback', async () => {
    const { api, ops } = await tenantCtx(t, root);
    const rx = await receiver();
    // A DNS server under the attacker's control: a public address on every other query, loopback in between. The
    // check and the connection each ask once, so a connection that resolves again on its own lands on loopback.
    let queries = 0;
    const rebinding: Resolve = async () => [
      queries++ % 2 === 0 ? { address: '93.184.215.14', family: 4 } : { address: '127.0.0.1', family: 4 },
    ];
    const strictRebound = webhookService({
      db: t.db,
      queries: webhookQueries(t.db),
      keyring: new MasterKeyring(t.config.masterKeys ?? []),
      audit: { record: async () => undefined, appendInTx: async () => undefined, appended: () => undefined },
      urlPolicy: { allowPrivate: false, allowHttp: true },
      log: pino({ level: 'silent' }),
      resolve: rebinding,
    });
    const { webhook } = expectOk(
      await ops.createWebhook({ url: `http://rebind.coffer.test:${rx.port}/hooks/coffer`, events: ['secret.rotated'] }),
      201,
      CreateWebhookResponse,
    );
    await api.put('sandbox/app/KEY', { value: 'v1' });
    await ops.rotate('sandbox/app/KEY', { value: 'v2' });
    // The first delivery and two retries: each one's connection must go only where its check allowed.
    for (let attempt = 1; attempt <= 3; attempt++) {
      const [queued] = await deliveriesOf(ops, webhook.id);
      if (attempt > 1) await makeAttemptDue(queued?.id ?? '');
      await eventually(async () => {
        await strictRebound.deliverDue();
        return rx.received.length > 0 || (await deliveriesOf(ops, webhook.id))[0]?.attempts === attempt;
      });
      expect({ attempt, received: rx.received.length }).toEqual({ attempt, received: 0 });
    }
    expect(queries).toBeGreaterThanOrEqual(6);
    expect(rx.received).toEqual([]);
    const [refused] = await deliveriesOf(ops, webhook.id);
    expect(refused).toMatchObject({ status: 'pending', attempts: 3, lastStatusCode: null });
    expect(refused?.lastError).toMatch(/must not point at a private, loopback or link-local address/);
  });

  // Regression (SSRF): WHATWG URL writes `[::ffff:127.0.0.1]` as `[::ffff:7f00:1]`, which the guard used to pass.
  it('refuses IPv4-mapped IPv6 forms of private addresses', async () => {
    const tenant = await createTenant(strict.app, await rootToken(strict.app));
    const ops = opsApi(strict.app, tenant.adminToken);
    for (const url of [
      'https://[::ffff:127.0.0.1]/hook',
      'https://[::ffff:7f00:1]/hook',
      'https://[::ffff:169.254.169.254]/latest/meta-data',
      'https://[::ffff:10.0.0.1]/hook',
      'https://[::127.0.0.1]/hook',
      'https://[64:ff9b::7f00:1]/hook',
      'https://[2002:7f00:1::1]/hook',
      'https://[2001:0:7f00:1::1]/hook',
      'https://[ff02::1]/hook',
      'https://[2001:db8::1]/hook',
      'https://224.0.0.1/hook',
      'https://192.0.2.1/hook',
    ]) {
      expect({ url, status: (await ops.createWebhook({ url, events: ['secret.rotated'] })).statusCode }).toEqual({
        url,
        status: 400,
      });
    }
    // A global unicast IPv6 address is fine.
    expectOk(
      await ops.createWebhook({ url: 'https://[2606:4700:4700::1111]/hook', events: ['secret.rotated'] }),
      201,
      CreateWebhookResponse,
    );
  });
});

// Regression: secret.written and secret.deleted were accepted at subscription but never enqueued.
it('delivers secret.written and secret.deleted, from single writes and bundles, without the value', async () => {
  const { tenant, api } = await tenantCtx(t, root);
  const ops = opsApi(t.app, tenant.adminToken);
  const rx = await receiver();
  expectOk(
    await ops.createWebhook({ url: rx.url, events: ['secret.written', 'secret.deleted'] }),
    201,
    CreateWebhookResponse,
  );
  await api.put('sandbox/app/WRITTEN', { value: 'webhook-value-one' });
  await api.put('sandbox/app/WRITTEN', { value: 'webhook-value-two' });
  expectEmpty(await api.remove('sandbox/app/WRITTEN'));
  await api.put('sandbox/app/GONE', { value: 'webhook-value-three' });
  expect(
    (await api.writeBundle('sandbox', 'app', { set: { NEW: { value: 'webhook-value-four' } }, delete: ['GONE'] }))
      .statusCode,
  ).toBe(200);
  await deliverUntil(t, rx.received, 6);
  const got = rx.received
    .map((d) => ({ event: d.headers['coffer-event'], body: JSON.parse(d.rawBody) }))
    .map(({ event, body }) => ({
      event,
      path: body.path,
      version: body.version,
      created: body.created,
      purged: body.purged,
    }))
    .sort((x, y) => `${x.path}${x.version}${x.event}`.localeCompare(`${y.path}${y.version}${y.event}`));
  expect(got).toEqual([
    { event: 'secret.deleted', path: 'sandbox/app/GONE', version: 1, created: undefined, purged: false },
    { event: 'secret.written', path: 'sandbox/app/GONE', version: 1, created: true, purged: undefined },
    { event: 'secret.written', path: 'sandbox/app/NEW', version: 1, created: true, purged: undefined },
    { event: 'secret.written', path: 'sandbox/app/WRITTEN', version: 1, created: true, purged: undefined },
    { event: 'secret.deleted', path: 'sandbox/app/WRITTEN', version: 2, created: undefined, purged: false },
    { event: 'secret.written', path: 'sandbox/app/WRITTEN', version: 2, created: false, purged: undefined },
  ]);
  expect(rx.received.map((d) => d.rawBody).join('\n')).not.toMatch(/webhook-value/);
  // A change that fails writes no event.
  expect((await api.put('sandbox/app/NEW', { value: 'x', ifVersion: 7 })).statusCode).toBe(409);
  await t.app.jobs.webhooks.deliverDue();
  expect(rx.received).toHaveLength(6);
});
