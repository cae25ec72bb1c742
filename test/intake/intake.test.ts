import { createHash, randomBytes } from 'node:crypto';
import {
  CreateIntakeResponse,
  IntakeLink,
  IntakeList,
  IntakeView,
  routes,
  SecretMetadata,
  SecretWithValue,
  SubmitIntakeResponse,
} from '@coffer/contracts';
import type pg from 'pg';
import { describe, expect, inject, it } from 'vitest';
import { withClient } from '../support/db.ts';
import { bearer, createIdentity, createTenant, type TestTenant } from '../support/factories.ts';
import { expectEmpty, expectError, expectOk, requestIdOf, secretsApi, sender } from '../support/secrets.ts';
import { ownerSuite } from '../support/suite.ts';
import { createTestApp, type TestApp } from '../support/test-app.ts';

/**
 * Intake links: made by an admin (or a service that may write the secret), opened and used once by whoever holds
 * the URL, with no token. Each test makes its own tenant.
 */

let t: TestApp;
let owner: pg.Client;
let root: string;
ownerSuite((s) => {
  ({ t, owner, root } = s);
});

const tokenOf = (url: string) => url.split('/').pop() as string;
const anonymous = () => sender(t.app, null);

/** A link made by `token` (an admin's unless said otherwise): its id, URL and token. */
async function makeLink(token: string, body: Record<string, unknown>) {
  const res = await sender(t.app, token)('POST', '/v1/intake', {
    expiresIn: 600,
    prompt: { label: 'Stripe secret key', help: 'Dashboard → Developers → API keys' },
    ...body,
  });
  const link = expectOk(res, 201, CreateIntakeResponse);
  return { ...link, token: tokenOf(link.url) };
}

const view = (token: string) => anonymous()('GET', `/v1/intake/${token}`);
const submit = (token: string, value: string) => anonymous()('PUT', `/v1/intake/${token}`, { value });

async function links(tenant: TestTenant, query = ''): Promise<IntakeList['items']> {
  return expectOk(await sender(t.app, tenant.adminToken)('GET', `/v1/intake${query}`), 200, IntakeList).items;
}

const stripeKey = () => `sk_test_${randomBytes(12).toString('hex')}`;

interface EventRow {
  action: string;
  outcome: string;
  actor_id: string | null;
  resource: string | null;
  version: number | null;
  error_code: string | null;
  details: Record<string, unknown> | null;
}

async function eventsOf(tenantId: string, requestId: string): Promise<EventRow[]> {
  const { rows } = await owner.query<EventRow>(
    `select action, outcome, actor_id, resource, version, error_code, details from coffer.audit_events
     where tenant_id = $1 and request_id = $2 order by seq`,
    [tenantId, requestId],
  );
  return rows;
}

const adminIdOf = async (tenant: TestTenant) =>
  ((await sender(t.app, tenant.adminToken)('GET', '/v1/auth/whoami')).json() as { identityId: string }).identityId;

describe('intake links', () => {
  it('single use: the prompt, one write as the link’s creator, then 410 for every later use', async () => {
    const tenant = await createTenant(t.app, root);
    const admin = secretsApi(t.app, tenant.adminToken);
    const link = await makeLink(tenant.adminToken, { path: 'shared/payments/STRIPE_KEY', format: 'stripe-secret-key' });
    expect(link.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1\/intake\/[A-Za-z0-9_-]{43}$/);
    expect(link).toMatchObject({ path: 'shared/payments/STRIPE_KEY', environment: 'default' });

    // The holder sees the prompt, the rule and the name; nothing of the tenant, the owner or the id.
    const seen = expectOk(await view(link.token), 200, IntakeView);
    expect(seen).toEqual({
      name: 'STRIPE_KEY',
      label: 'Stripe secret key',
      help: 'Dashboard → Developers → API keys',
      format: 'stripe-secret-key',
      expiresAt: link.expiresAt,
    });
    const body = (await view(link.token)).body;
    for (const hidden of [tenant.tenant.id, tenant.tenant.slug, 'payments', link.id])
      expect(body).not.toContain(hidden);

    const value = stripeKey();
    const used = await submit(link.token, value);
    expect(expectOk(used, 200, SubmitIntakeResponse).name).toBe('STRIPE_KEY');
    const stored = expectOk(await admin.get('shared/payments/STRIPE_KEY'), 200, SecretWithValue);
    expect([stored.value, stored.version, stored.format]).toEqual([value, 1, 'stripe-secret-key']);

    // Audited as a write by the admin who made the link, through intake, and as the link's receipt.
    const adminId = await adminIdOf(tenant);
    const events = await eventsOf(tenant.tenant.id, requestIdOf(used));
    expect(events.map((e) => [e.action, e.outcome, e.actor_id, e.resource, e.version])).toEqual([
      ['secrets.write', 'allowed', adminId, 'shared/payments/STRIPE_KEY', 1],
      ['intake.received', 'allowed', adminId, 'shared/payments/STRIPE_KEY', 1],
    ]);
    expect(events[0]?.details).toMatchObject({ via: 'intake', intakeId: link.id, created: true });
    expect(events[1]?.details).toEqual({ intakeId: link.id });

    // Spent: a second value, and a second look, are 410; the secret keeps the first value.
    expect(expectError(await submit(link.token, stripeKey()), 410, 'gone').message).toContain('already used');
    expectError(await view(link.token), 410, 'gone');
    expect(expectOk(await admin.get('shared/payments/STRIPE_KEY'), 200, SecretWithValue).version).toBe(1);
    expect(await links(tenant)).toMatchObject([{ id: link.id, state: 'received', receivedVersion: 1 }]);
  });

  it('an expired link answers 410 to a look and to a value, and lists as expired', async () => {
    const tenant = await createTenant(t.app, root);
    const link = await makeLink(tenant.adminToken, { path: 'sandbox/sbx-1/API_KEY', expiresIn: 60 });
    expect(Date.parse(link.expiresAt) - Date.now()).toBeGreaterThan(55_000);
    expectOk(await view(link.token), 200, IntakeView);
    // Time passes: the owner moves the expiry into the past.
    await owner.query(`update coffer.intake_links set expires_at = now() - interval '1 second' where id = $1`, [
      link.id,
    ]);
    expect(expectError(await view(link.token), 410, 'gone').message).toContain('expired');
    expectError(await submit(link.token, 'v'), 410, 'gone');
    expectError(await secretsApi(t.app, tenant.adminToken).get('sandbox/sbx-1/API_KEY'), 404, 'not_found');
    expect((await links(tenant, '?state=expired')).map((l) => l.id)).toEqual([link.id]);
    expect(await links(tenant, '?state=pending')).toEqual([]);
  });

  it('a malformed value is 422 naming the rule, the link stays usable, and a good value then succeeds', async () => {
    const tenant = await createTenant(t.app, root);
    const link = await makeLink(tenant.adminToken, { path: 'shared/payments/STRIPE_KEY', format: 'stripe-secret-key' });
    const bad = `pk_live_${randomBytes(8).toString('hex')}`;
    const err = expectError(await submit(link.token, bad), 422, 'unprocessable');
    expect(err.details).toEqual([{ path: 'body.value', message: expect.stringMatching(/^stripe-secret-key: /) }]);
    expect(err.message).not.toContain(bad);
    // A custom format's rule is named the same way.
    const custom = await makeLink(tenant.adminToken, { path: 'shared/payments/PIN', format: { minLength: 6 } });
    expect(expectError(await submit(custom.token, '123'), 422, 'unprocessable').details?.[0]?.message).toMatch(
      /^minLength: /,
    );

    expectOk(await view(link.token), 200, IntakeView);
    const good = stripeKey();
    expectOk(await submit(link.token, good), 200, SubmitIntakeResponse);
    const stored = expectOk(
      await secretsApi(t.app, tenant.adminToken).get('shared/payments/STRIPE_KEY'),
      200,
      SecretWithValue,
    );
    expect(stored.value).toBe(good);
  });

  it("the value must satisfy the secret's own format too, and without a format the link takes the secret's", async () => {
    const tenant = await createTenant(t.app, root);
    const admin = secretsApi(t.app, tenant.adminToken);
    expectOk(
      await admin.put('shared/app/WEBHOOK', { value: 'https://a.example/hook', format: 'url' }),
      201,
      SecretMetadata,
    );
    const inherits = await makeLink(tenant.adminToken, { path: 'shared/app/WEBHOOK' });
    expect(expectOk(await view(inherits.token), 200, IntakeView).format).toBe('url');
    expectError(await submit(inherits.token, 'not a url'), 422, 'unprocessable');
    // A link whose own rule is looser still cannot store what the secret's format refuses.
    const looser = await makeLink(tenant.adminToken, { path: 'shared/app/WEBHOOK', format: { minLength: 1 } });
    expectError(await submit(looser.token, 'not a url'), 422, 'unprocessable');
    expectOk(await submit(inherits.token, 'https://b.example/hook'), 200, SubmitIntakeResponse);
    expect(expectOk(await admin.get('shared/app/WEBHOOK'), 200, SecretWithValue)).toMatchObject({
      value: 'https://b.example/hook',
      version: 2,
      format: 'url',
    });
  });

  it('compare-and-set: a secret that moved since the link was made is 409, nothing is written, the link is spent', async () => {
    const tenant = await createTenant(t.app, root);
    const admin = secretsApi(t.app, tenant.adminToken);
    expectOk(await admin.put('shared/app/TOKEN', { value: 'v1' }), 201, SecretMetadata);
    const link = await makeLink(tenant.adminToken, { path: 'shared/app/TOKEN' });
    const fresh = await makeLink(tenant.adminToken, { path: 'shared/app/NEW' });
    expect((await links(tenant)).find((l) => l.id === link.id)?.expectedVersion).toBe(1);
    expectOk(await admin.put('shared/app/TOKEN', { value: 'v2' }), 200, SecretMetadata);
    // Someone else created the secret a link expected not to exist.
    expectOk(await admin.put('shared/app/NEW', { value: 'theirs' }), 201, SecretMetadata);

    const refused = await submit(link.token, 'from-intake');
    expect(expectError(refused, 409, 'conflict').message).toContain('changed since this link was made');
    expectError(await submit(fresh.token, 'from-intake'), 409, 'conflict');
    expect(expectOk(await admin.get('shared/app/TOKEN'), 200, SecretWithValue)).toMatchObject({
      value: 'v2',
      version: 2,
    });
    expect(expectOk(await admin.get('shared/app/NEW'), 200, SecretWithValue).value).toBe('theirs');
    // The refusal is recorded, with the reason the public answer leaves out.
    const [event] = await eventsOf(tenant.tenant.id, requestIdOf(refused));
    expect(event).toMatchObject({
      action: 'intake.received',
      outcome: 'error',
      error_code: 'conflict',
      actor_id: null,
    });
    expect(event?.details).toMatchObject({ intakeId: link.id, reason: 'the current version is 2, not 1' });

    expectError(await submit(link.token, 'again'), 410, 'gone');
    expectError(await view(link.token), 410, 'gone');
    expect((await links(tenant, '?state=conflict')).map((l) => l.id).sort()).toEqual([link.id, fresh.id].sort());
  });

  it('a token works only on its own tenant’s secret, and another tenant cannot see, list or revoke the link', async () => {
    const a = await createTenant(t.app, root);
    const b = await createTenant(t.app, root);
    const path = 'shared/payments/STRIPE_KEY';
    expectOk(await secretsApi(t.app, b.adminToken).put(path, { value: 'b-value' }), 201, SecretMetadata);
    const link = await makeLink(a.adminToken, { path });
    const bLink = await makeLink(b.adminToken, { path });

    const value = stripeKey();
    expectOk(await submit(link.token, value), 200, SubmitIntakeResponse);
    expect(expectOk(await secretsApi(t.app, a.adminToken).get(path), 200, SecretWithValue).value).toBe(value);
    expect(expectOk(await secretsApi(t.app, b.adminToken).get(path), 200, SecretWithValue)).toMatchObject({
      value: 'b-value',
      version: 1,
    });
    // B's link is B's alone: still pending, expecting B's version.
    expect(await links(b)).toMatchObject([{ id: bLink.id, state: 'pending', expectedVersion: 1 }]);
    expect((await links(b)).map((l) => l.id)).not.toContain(link.id);
    expectError(await sender(t.app, b.adminToken)('POST', `/v1/intake/${link.id}/revoke`), 404, 'not_found');
    // B's admin token is no way into A's link either: the public routes ignore credentials.
    const withB = await t.app.inject({ url: `/v1/intake/${bLink.token}`, headers: bearer(a.adminToken) });
    expect(expectOk(withB, 200, IntakeView).name).toBe('STRIPE_KEY');

    // A token that is no link is 404 (the same for a well-formed one and for anything else), never 410.
    for (const unknown of [randomBytes(32).toString('base64url'), 'x', link.id]) {
      expectError(await view(unknown), 404, 'not_found');
      expectError(await submit(unknown, 'v'), 404, 'not_found');
    }
    // The lookup is by the hash of the whole token: its hash, or a prefix, is not a token.
    const hash = createHash('sha256').update(link.token).digest('base64url');
    expectError(await view(hash), 404, 'not_found');
    expectError(await view(link.token.slice(0, 42)), 404, 'not_found');
  });

  it('a link into ?env=staging writes staging, and only staging', async () => {
    const tenant = await createTenant(t.app, root);
    const admin = sender(t.app, tenant.adminToken);
    expect((await admin('POST', '/v1/environments', { slug: 'staging', name: 'Staging' })).statusCode).toBe(201);
    const link = await makeLink(tenant.adminToken, { path: 'shared/payments/STRIPE_KEY', env: 'staging' });
    expect(link.environment).toBe('staging');
    const value = stripeKey();
    const used = await submit(link.token, value);
    expectOk(used, 200, SubmitIntakeResponse);
    const staged = expectOk(
      await admin('GET', '/v1/secrets/shared/payments/STRIPE_KEY?env=staging'),
      200,
      SecretWithValue,
    );
    expect(staged.value).toBe(value);
    expectError(await admin('GET', '/v1/secrets/shared/payments/STRIPE_KEY'), 404, 'not_found');
    const events = await eventsOf(tenant.tenant.id, requestIdOf(used));
    expect(events.map((e) => e.details?.environment)).toEqual(['staging', 'staging']);
    expect((await links(tenant))[0]).toMatchObject({ environment: 'staging', state: 'received' });
    // An environment that does not exist is refused when the link is made.
    expectError(
      await admin('POST', '/v1/intake', {
        path: 'shared/payments/STRIPE_KEY',
        env: 'nowhere',
        expiresIn: 600,
        prompt: { label: 'x' },
      }),
      404,
      'not_found',
    );
  });

  it('services make links where they may write; a link stops when its creator may no longer write there', async () => {
    const tenant = await createTenant(t.app, root);
    const make = (token: string, path: string, env?: string) =>
      sender(t.app, token)('POST', '/v1/intake', {
        path,
        ...(env ? { env } : {}),
        expiresIn: 600,
        prompt: { label: 'API key' },
      });
    expect(
      (await sender(t.app, tenant.adminToken)('POST', '/v1/environments', { slug: 'qa', name: 'QA' })).statusCode,
    ).toBe(201);
    const writer = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      policies: [{ path: 'sandbox/sbx-9/*', capabilities: ['write'] }],
    });
    const reader = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      policies: [{ path: 'sandbox/sbx-9/*', capabilities: ['read', 'list'] }],
    });
    const auditor = await createIdentity(t.app, tenant.adminToken, { role: 'auditor' });
    expectError(await make(reader.token, 'sandbox/sbx-9/KEY'), 403, 'forbidden');
    expectError(await make(writer.token, 'sandbox/other/KEY'), 403, 'forbidden');
    // An environment none of its policies applies in does not exist for it.
    expectError(await make(writer.token, 'sandbox/sbx-9/KEY', 'qa'), 404, 'not_found');
    expectError(await make(auditor.token, 'sandbox/sbx-9/KEY'), 403, 'forbidden');
    // Listing and revoking are for tenant admins.
    const asWriter = sender(t.app, writer.token);
    expectError(await asWriter('GET', '/v1/intake'), 403, 'forbidden');
    expectError(await asWriter('POST', '/v1/intake/00000000-0000-4000-8000-000000000000/revoke'), 403, 'forbidden');

    const first = expectOk(await make(writer.token, 'sandbox/sbx-9/KEY'), 201, CreateIntakeResponse);
    const second = expectOk(await make(writer.token, 'sandbox/sbx-9/OTHER'), 201, CreateIntakeResponse);
    const used = await submit(tokenOf(first.url), 'svc-value');
    expectOk(used, 200, SubmitIntakeResponse);
    expect((await eventsOf(tenant.tenant.id, requestIdOf(used)))[0]?.actor_id).toBe(writer.identity.id);

    // Narrowed to read only: its pending link is no longer valid.
    const narrow = await sender(t.app, tenant.adminToken)('PATCH', `/v1/identities/${writer.identity.id}`, {
      policies: [{ path: 'sandbox/sbx-9/*', capabilities: ['read'] }],
    });
    expect(narrow.statusCode, narrow.body).toBe(200);
    expect(expectError(await view(tokenOf(second.url)), 410, 'gone').message).toContain('no longer valid');
    expectError(await submit(tokenOf(second.url), 'v'), 410, 'gone');
    expectError(await secretsApi(t.app, tenant.adminToken).get('sandbox/sbx-9/OTHER'), 404, 'not_found');

    // An admin's links stop when the admin is disabled, or its client secret rotates.
    const other = await createIdentity(t.app, tenant.adminToken, { role: 'admin' });
    const otherLink = await makeLink(other.token, { path: 'shared/x/ONE' });
    const rotated = await sender(t.app, tenant.adminToken)('POST', `/v1/identities/${other.identity.id}/secret`);
    expect(rotated.statusCode, rotated.body).toBe(200);
    expectError(await submit(otherLink.token, 'v'), 410, 'gone');
  });

  it('revoking a pending link makes it 410; a closed link cannot be revoked', async () => {
    const tenant = await createTenant(t.app, root);
    const admin = sender(t.app, tenant.adminToken);
    const link = await makeLink(tenant.adminToken, { path: 'user/alice/GITHUB_TOKEN' });
    const revoked = expectOk(await admin('POST', `/v1/intake/${link.id}/revoke`), 200, IntakeLink);
    expect(revoked).toMatchObject({ id: link.id, state: 'revoked', path: 'user/alice/GITHUB_TOKEN' });
    expect(expectError(await view(link.token), 410, 'gone').message).toContain('revoked');
    expectError(await submit(link.token, 'v'), 410, 'gone');
    expectError(await admin('POST', `/v1/intake/${link.id}/revoke`), 409, 'conflict');
    expect(await links(tenant, '?state=revoked')).toMatchObject([{ id: link.id, state: 'revoked' }]);
    expect((await links(tenant))[0]?.closedAt).not.toBeNull();
    expectError(await admin('POST', '/v1/intake/00000000-0000-4000-8000-000000000000/revoke'), 404, 'not_found');
  });

  it('refuses a malformed link: unknown fields, a lifetime out of bounds, a bad path or format', async () => {
    const tenant = await createTenant(t.app, root);
    const admin = sender(t.app, tenant.adminToken);
    const base = { path: 'shared/app/KEY', expiresIn: 600, prompt: { label: 'Key' } };
    const cases: [Record<string, unknown>, string][] = [
      [{ ...base, extra: 1 }, 'body.extra'],
      [{ ...base, prompt: { label: 'Key', hint: 'x' } }, 'body.prompt.hint'],
      [{ ...base, expiresIn: 59 }, 'body.expiresIn'],
      [{ ...base, expiresIn: 7 * 86_400 + 1 }, 'body.expiresIn'],
      [{ ...base, path: 'shared/app' }, 'body.path'],
      [{ ...base, path: 'vault/app/KEY' }, 'body.path'],
      [{ ...base, prompt: { label: '' } }, 'body.prompt.label'],
      [{ ...base, format: { pattern: '(' } }, 'body.format.pattern'],
    ];
    for (const [body, where] of cases) {
      const err = expectError(await admin('POST', '/v1/intake', body), 400, 'validation_failed');
      expect(
        err.details?.map((d) => d.path),
        JSON.stringify(body),
      ).toContain(where);
    }
    expectError(
      await anonymous()('PUT', `/v1/intake/${randomBytes(32).toString('base64url')}`, { value: 'v', more: 1 }),
      400,
      'validation_failed',
    );
    // A deleted secret must be restored (or purged) before a link can target it.
    expectOk(await secretsApi(t.app, tenant.adminToken).put('shared/app/GONE', { value: 'v' }), 201, SecretMetadata);
    expectEmpty(await secretsApi(t.app, tenant.adminToken).remove('shared/app/GONE'));
    expectError(await admin('POST', '/v1/intake', { ...base, path: 'shared/app/GONE' }), 409, 'conflict');
  });

  it('leak scan: neither the token nor the value reaches a log line or an audit row', async () => {
    const tenant = await createTenant(t.app, root);
    const value = `sk_test_${randomBytes(16).toString('hex')}`;
    const link = await makeLink(tenant.adminToken, { path: 'shared/payments/STRIPE_KEY', format: 'stripe-secret-key' });
    const logsBefore = t.logs.length;
    const wrong = await makeLink(tenant.adminToken, { path: 'shared/payments/OTHER', format: 'stripe-secret-key' });
    await view(link.token);
    await submit(link.token, `${value}!`); // 422: the value is in a refused body
    await submit(link.token, value);
    await submit(link.token, value); // 410
    await submit(wrong.token, value.replace('sk_', 'pk_')); // 422
    await view(`${link.token.slice(0, 40)}zzz`); // unknown
    await anonymous()('GET', `/v1/intake/${link.token}/`); // no route: the logger still sees the URL
    await anonymous()('GET', `/v1//intake/${link.token}`);

    const logs = t.logs.slice(logsBefore).join('\n');
    expect(logs).toContain('/v1/intake/[redacted]');
    const tokens = [link.token, wrong.token];
    for (const secret of [...tokens, value]) {
      expect(logs.includes(secret), 'a log line holds the token or the value').toBe(false);
      expect(logs.includes(secret.slice(8, 30)), 'a log line holds part of the token or the value').toBe(false);
    }
    const { rows } = await owner.query<{ row: string }>(
      'select row_to_json(e)::text as row from coffer.audit_events e where tenant_id = $1',
      [tenant.tenant.id],
    );
    const audit = rows.map((r) => r.row).join('\n');
    expect(audit).toContain('intake.received');
    for (const secret of [...tokens, value, createHash('sha256').update(link.token).digest('hex')]) {
      expect(audit.includes(secret), 'an audit row holds the token, its hash or the value').toBe(false);
    }
    // The database keeps only the token's hash.
    const { rows: stored } = await owner.query<{ h: Buffer }>(
      'select token_hash as h from coffer.intake_links where id = $1',
      [link.id],
    );
    expect(stored[0]?.h.equals(createHash('sha256').update(link.token).digest())).toBe(true);
  });

  it('the app role reads a link without its tenant only by the hash of its token', async () => {
    const tenant = await createTenant(t.app, root);
    const link = await makeLink(tenant.adminToken, { path: 'shared/app/KEY' });
    const hash = createHash('sha256').update(link.token).digest();
    await withClient(inject('appDatabaseUrl'), async (c) => {
      expect((await c.query('select * from coffer.intake_links')).rowCount).toBe(0);
      await c.query(`select set_config('app.intake_token_hash', $1, false)`, [randomBytes(32).toString('hex')]);
      expect((await c.query('select * from coffer.intake_links')).rowCount).toBe(0);
      await c.query(`select set_config('app.intake_token_hash', '', false)`);
      const found = await c.query<{ id: string }>('select id from coffer.intake_for_token($1)', [hash]);
      expect(found.rows.map((r) => r.id)).toEqual([link.id]);
      // The function leaves the setting cleared, and the lookup writes nothing.
      expect((await c.query('select * from coffer.intake_links')).rowCount).toBe(0);
      const update = await c
        .query(`update coffer.intake_links set state = 'revoked' where id = $1`, [link.id])
        .then((r) => r.rowCount);
      expect(update).toBe(0);
    });
  });

  it('the public routes are counted per source address, like login, before any token is looked up', async () => {
    expect([routes.getIntake.rateLimit, routes.submitIntake.rateLimit]).toEqual(['login', 'login']);
    const limited = await createTestApp({ COFFER_LOGIN_RATE_LIMIT_PER_MINUTE: '5' });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 7; i++) {
        const res = await limited.app.inject({ url: `/v1/intake/${randomBytes(32).toString('base64url')}` });
        statuses.push(res.statusCode);
      }
      expect(statuses).toEqual([404, 404, 404, 404, 404, 429, 429]);
    } finally {
      await limited.close();
    }
  });
});
