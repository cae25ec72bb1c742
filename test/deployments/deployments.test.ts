import { randomBytes } from 'node:crypto';
import {
  Bundle,
  CreatedDeployment,
  Deployment,
  DeploymentPage,
  DeploymentPlan,
  Environment,
  InventoryPage,
  RevokedDeployment,
  RevokedVersion,
  RotationLog,
  RotationStatus,
  SecretConsumers,
  SecretMetadata,
  SecretPage,
  SecretVersions,
  SecretWithValue,
} from '@coffer/contracts';
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { createIdentity } from '../support/factories.ts';
import { expectError, expectOk, sender } from '../support/secrets.ts';
import { ownerSuite, tenantCtx } from '../support/suite.ts';
import type { TestApp } from '../support/test-app.ts';

let t: TestApp;
let owner: pg.Client;
let root: string;
ownerSuite((s) => ({ t, owner, root } = s));

const v = (label: string) => `${label}-${randomBytes(8).toString('hex')}`;

/** A tenant whose `sandbox/app` holds one secret of each class, with strategies, in `staging`. */
async function world() {
  const ctx = await tenantCtx(t, root);
  const as = (token: string) => sender(t.app, token);
  const admin = as(ctx.tenant.adminToken);
  expectOk(await admin('POST', '/v1/environments', { slug: 'staging', name: 'Staging' }), 201, Environment);
  const S = '/v1/secrets/sandbox/app';
  const put = async (name: string, body: Record<string, unknown>) =>
    expectOk(await admin('PUT', `${S}/${name}?env=staging`, body), 201, SecretMetadata);
  await put('DATABASE_URL', {
    value: 'postgres://app:pw@db.internal:5432/app',
    class: 'infrastructure',
    ownerTeam: 'platform',
    contact: '#platform-oncall',
    rotation: { intervalDays: 90 },
  });
  await put('SESSION_KEY', {
    value: `sk_${randomBytes(8).toString('hex')}`,
    class: 'service',
    ownerTeam: 'web',
    contact: 'web@example.com',
    format: { pattern: '^sk_[A-Za-z0-9]+$' },
    // Rotated monthly with this generator, which deployments also use unless their tier names its own.
    rotation: { intervalDays: 30, generator: { length: 24, charset: 'alphanumeric', prefix: 'sk_' } },
    strategy: { local: { action: 'generate', generator: { length: 32, charset: 'alphanumeric', prefix: 'sk_' } } },
  });
  await put('OPENAI_KEY', {
    value: v('openai'),
    class: 'user',
    description: 'The API key from platform.openai.com',
    strategy: { desktop: { action: 'prompt', prompt: { label: 'Your OpenAI API key', format: { minLength: 8 } } } },
  });
  await put('TELEMETRY_KEY', {
    value: v('telemetry'),
    class: 'infrastructure',
    strategy: { desktop: { action: 'inject' }, kiosk: { action: 'inject' } },
  });
  await put('FEATURE_FLAGS', { value: '{"beta":true}' });
  return { ...ctx, as, admin, S };
}

const deploy = async (send: ReturnType<typeof sender>, tier: string, extra: Record<string, unknown> = {}) =>
  expectOk(
    await send('POST', '/v1/deployments', {
      name: `${tier}-${randomBytes(3).toString('hex')}`,
      environment: 'staging',
      tier,
      bundles: ['sandbox/app'],
      ...extra,
    }),
    201,
    CreatedDeployment,
  );

const actions = (plan: { path: string; action: string }[]) =>
  Object.fromEntries(plan.map((i) => [i.path.split('/')[2], i.action]));

describe('deployments: the strategy lives on the server', () => {
  it('class, strategy, owner team and contact are set by PUT and PATCH, shown in the metadata, and validated', async () => {
    const { admin, S } = await world();
    const got = expectOk(await admin('GET', `${S}/SESSION_KEY?env=staging`), 200, SecretWithValue);
    expect(got).toMatchObject({
      class: 'service',
      ownerTeam: 'web',
      contact: 'web@example.com',
      strategy: { local: { action: 'generate', generator: { length: 32, charset: 'alphanumeric', prefix: 'sk_' } } },
    });
    const patched = expectOk(
      await admin('PATCH', `${S}/FEATURE_FLAGS?env=staging`, { class: 'service', ownerTeam: 'growth' }),
      200,
      SecretMetadata,
    );
    expect(patched).toMatchObject({ class: 'service', ownerTeam: 'growth', contact: null, strategy: null });
    const listed = expectOk(await admin('GET', '/v1/secrets?env=staging&kind=sandbox&owner=app'), 200, SecretPage);
    expect(Object.fromEntries(listed.items.map((m) => [m.name, m.class]))).toEqual({
      DATABASE_URL: 'infrastructure',
      FEATURE_FLAGS: 'service',
      OPENAI_KEY: 'user',
      SESSION_KEY: 'service',
      TELEMETRY_KEY: 'infrastructure',
    });
    const cleared = expectOk(
      await admin('PATCH', `${S}/FEATURE_FLAGS?env=staging`, { class: null, ownerTeam: null }),
      200,
      SecretMetadata,
    );
    expect(cleared).toMatchObject({ class: null, ownerTeam: null });

    for (const [body, where] of [
      [{ class: 'secret' }, 'body.class'],
      [
        { strategy: { local: { action: 'prompt', generator: { length: 16, charset: 'hex' } } } },
        'body.strategy.local.generator',
      ],
      [{ strategy: { local: { action: 'generate', prompt: { label: 'x' } } } }, 'body.strategy.local.prompt'],
      [{ strategy: { Local: { action: 'inject' } } }, 'body.strategy'],
      [{ strategy: { local: { action: 'inject', colour: 'red' } } }, 'body.strategy.local.colour'],
      [{ ownerTeam: '' }, 'body.ownerTeam'],
    ] as const) {
      const err = expectError(await admin('PATCH', `${S}/FEATURE_FLAGS?env=staging`, body), 400, 'validation_failed');
      expect(
        err.details?.map((d) => d.path),
        JSON.stringify(body),
      ).toEqual(expect.arrayContaining([expect.stringContaining(where)]));
    }
  });
});

describe('deployments: a plan per tier', () => {
  it('each tier plans each secret from its strategy, else its class; the dry run changes nothing', async () => {
    const { admin, S } = await world();
    const expected: Record<string, Record<string, string>> = {
      local: {
        DATABASE_URL: 'strip',
        FEATURE_FLAGS: 'inject',
        OPENAI_KEY: 'prompt',
        SESSION_KEY: 'generate',
        TELEMETRY_KEY: 'strip',
      },
      desktop: {
        DATABASE_URL: 'strip',
        FEATURE_FLAGS: 'inject',
        OPENAI_KEY: 'prompt',
        SESSION_KEY: 'generate',
        TELEMETRY_KEY: 'inject',
      },
      cloud: {
        DATABASE_URL: 'inject',
        FEATURE_FLAGS: 'inject',
        OPENAI_KEY: 'prompt',
        SESSION_KEY: 'inject',
        TELEMETRY_KEY: 'inject',
      },
      // Not built in, but a strategy names it: the rest fail closed (infrastructure stripped, service generated).
      kiosk: {
        DATABASE_URL: 'strip',
        FEATURE_FLAGS: 'inject',
        OPENAI_KEY: 'prompt',
        SESSION_KEY: 'generate',
        TELEMETRY_KEY: 'inject',
      },
    };
    for (const [tier, want] of Object.entries(expected)) {
      const dry = expectOk(
        await admin('POST', '/v1/deployments/plan', { environment: 'staging', tier, bundles: ['sandbox/app'] }),
        200,
        DeploymentPlan,
      );
      expect(actions(dry.plan), `plan ${tier}`).toEqual(want);
      const made = await deploy(admin, tier);
      expect(actions(made.plan), `deployment ${tier}`).toEqual(want);
      expect(made.counts.generate).toBe(Object.values(want).filter((a) => a === 'generate').length);
      for (const i of made.plan) {
        if (i.action === 'inject') expect(i.version, i.path).toEqual(expect.any(Number));
        if (i.action === 'strip' || i.action === 'prompt') expect(i.version, i.path).toBeNull();
      }
      // Stripped, prompted and injected values are never in the answer; only what was generated.
      expect(Object.keys(made.generated)).toEqual(Object.keys(want).filter((n) => want[n] === 'generate'));
      expect(JSON.stringify(made)).not.toContain('db.internal');
    }
    const reasons = Object.fromEntries((await deploy(admin, 'desktop')).plan.map((i) => [i.path.split('/')[2], i]));
    expect(reasons.DATABASE_URL?.reason).toBe('never shipped to this tier (infrastructure secret)');
    expect(reasons.TELEMETRY_KEY?.reason).toBe(
      'injected from Coffer at start (coffer run) (set for desktop on the secret)',
    );
    expect(reasons.FEATURE_FLAGS?.reason).toBe('injected from Coffer at start (coffer run) (no class)');
    // A prompt says what to ask, with the rule the value must satisfy, and carries the intake link (item 4).
    expect(reasons.OPENAI_KEY?.prompt).toEqual({
      label: 'Your OpenAI API key',
      help: 'The API key from platform.openai.com',
      format: { minLength: 8 },
    });
    expect(reasons.OPENAI_KEY?.intake).toMatchObject({ path: 'sandbox/app/OPENAI_KEY', environment: 'staging' });
    const local = (await deploy(admin, 'local')).plan.find((i) => i.path.endsWith('/OPENAI_KEY'));
    expect(local?.prompt).toEqual({ label: 'OPENAI_KEY', help: 'The API key from platform.openai.com' });

    // The dry run wrote nothing: SESSION_KEY has one version per deployment made above, none for the plans.
    const versions = expectOk(await admin('GET', `${S}/SESSION_KEY/versions?env=staging`), 200, SecretVersions);
    expect(versions.items.length).toBe(1 + 5);
  });

  it("gives a user-class prompt a real intake link, made with the deployment, that stores the person's value", async () => {
    const { admin, tenant, S } = await world();
    const dry = expectOk(
      await admin('POST', '/v1/deployments/plan', {
        environment: 'staging',
        tier: 'desktop',
        bundles: ['sandbox/app'],
      }),
      200,
      DeploymentPlan,
    );
    // A dry run changes nothing, so it makes no link.
    expect(dry.plan.find((i) => i.path.endsWith('/OPENAI_KEY'))?.intake).toBeUndefined();

    const made = await deploy(admin, 'desktop');
    const item = made.plan.find((i) => i.path.endsWith('/OPENAI_KEY'));
    expect(item?.action).toBe('prompt');
    const link = item?.intake;
    expect(link).toEqual({
      id: expect.any(String),
      url: expect.stringMatching(/\/v1\/intake\/[A-Za-z0-9_-]{43}$/),
      path: 'sandbox/app/OPENAI_KEY',
      environment: 'staging',
      expiresAt: expect.any(String),
    });
    // Only prompts get links.
    expect(made.plan.filter((i) => i.intake).map((i) => i.path)).toEqual(['sandbox/app/OPENAI_KEY']);
    // The link is shown once: the stored deployment does not carry it.
    const stored = expectOk(await admin('GET', `/v1/deployments/${made.id}`), 200, Deployment);
    expect(JSON.stringify(stored)).not.toContain(link?.url.split('/').pop());

    // The person sees the deployment's prompt (no credentials), and the link checks the prompt's format.
    const token = link?.url.split('/').pop() as string;
    const view = await t.app.inject({ method: 'GET', url: `/v1/intake/${token}` });
    expect(view.statusCode, view.body).toBe(200);
    expect(view.json()).toMatchObject({ label: 'Your OpenAI API key', name: 'OPENAI_KEY' });
    const short = await t.app.inject({ method: 'PUT', url: `/v1/intake/${token}`, payload: { value: 'short' } });
    expect(short.statusCode, short.body).toBe(422);
    const value = v('sk-openai');
    const sent = await t.app.inject({ method: 'PUT', url: `/v1/intake/${token}`, payload: { value } });
    expect(sent.statusCode, sent.body).toBe(200);
    const read = expectOk(await admin('GET', `${S}/OPENAI_KEY?env=staging`), 200, SecretWithValue);
    expect(read.value).toBe(value);

    // Every prompt of a deployment has its link: a service that may list the secrets but not write the prompted one
    // is refused, in the plan as in the deployment, and nothing is made.
    const lister = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      policies: [{ path: 'sandbox/app/*', capabilities: ['list'], environments: ['staging'] }],
    });
    const asLister = sender(t.app, lister.token);
    const before = await owner.query('select count(*)::int as n from coffer.deployments');
    const body = { environment: 'staging', tier: 'cloud', bundles: ['sandbox/app'] };
    for (const [route, extra] of [
      ['/v1/deployments/plan', {}],
      ['/v1/deployments', { name: 'nolink' }],
    ] as const) {
      const refused = expectError(await asLister('POST', route, { ...body, ...extra }), 403, 'forbidden');
      expect(refused.details).toContainEqual({
        path: 'sandbox/app/OPENAI_KEY',
        message: 'no write capability to make the intake link of it',
      });
    }
    expect((await owner.query('select count(*)::int as n from coffer.deployments')).rows).toEqual(before.rows);
  });

  it('refuses a tier nothing knows, an empty bundle, and an environment that is not there', async () => {
    const { admin } = await world();
    const body = { environment: 'staging', tier: 'mainframe', bundles: ['sandbox/app'] };
    const tier = expectError(await admin('POST', '/v1/deployments/plan', body), 422, 'unprocessable');
    expect(tier.details).toEqual([{ path: 'body.tier', message: expect.stringContaining('not built in') }]);
    const empty = expectError(
      await admin('POST', '/v1/deployments', {
        ...body,
        name: 'x',
        tier: 'local',
        bundles: ['sandbox/app', 'sandbox/nope'],
      }),
      422,
      'unprocessable',
    );
    expect(empty.details).toEqual([{ path: 'body.bundles.1', message: expect.stringContaining('sandbox/nope') }]);
    expectError(
      await admin('POST', '/v1/deployments', { ...body, name: 'x', tier: 'local', environment: 'production' }),
      404,
      'not_found',
    );
    expectError(
      await admin('POST', '/v1/deployments', {
        ...body,
        name: 'x',
        tier: 'local',
        bundles: ['sandbox/app', 'sandbox/app'],
      }),
      400,
      'validation_failed',
    );
    const list = expectOk(await admin('GET', '/v1/deployments'), 200, DeploymentPage);
    expect(list.items).toEqual([]);
  });

  it('a generated value that fails the format is refused, naming the secret and the rule, and nothing is made', async () => {
    const { admin, S } = await world();
    expectOk(
      await admin('PATCH', `${S}/SESSION_KEY?env=staging`, {
        strategy: { local: { action: 'generate', generator: { length: 24, charset: 'hex' } } },
      }),
      200,
      SecretMetadata,
    );
    const err = expectError(
      await admin('POST', '/v1/deployments', {
        name: 'bad',
        environment: 'staging',
        tier: 'local',
        bundles: ['sandbox/app'],
      }),
      422,
      'unprocessable',
    );
    expect(err.details).toEqual([
      { path: 'sandbox/app/SESSION_KEY', message: 'pattern: must match the format pattern' },
    ]);
    expect(expectOk(await admin('GET', '/v1/deployments'), 200, DeploymentPage).items).toEqual([]);
    const versions = expectOk(await admin('GET', `${S}/SESSION_KEY/versions?env=staging`), 200, SecretVersions);
    expect(versions.items.map((x) => x.version)).toEqual([1]);
  });
});

describe('deployments: generated fresh for each', () => {
  it('each deployment gets its own new value, as a version that belongs to it; the record says who made it', async () => {
    const { admin, S, tenant } = await world();
    const made = [await deploy(admin, 'local'), await deploy(admin, 'local'), await deploy(admin, 'desktop')];
    const values = made.map((d) => d.generated.SESSION_KEY as string);
    expect(new Set(values).size).toBe(3);
    // local has its own generator; desktop names none, so the rotation policy's makes its value.
    expect(values.map((x) => x.length)).toEqual([35, 35, 27]);
    for (const value of values) expect(value).toMatch(/^sk_[A-Za-z0-9]+$/);
    const versions = expectOk(await admin('GET', `${S}/SESSION_KEY/versions?env=staging`), 200, SecretVersions);
    expect(versions.items.map((x) => [x.version, x.deployment])).toEqual([
      [4, made[2]?.id],
      [3, made[1]?.id],
      [2, made[0]?.id],
      [1, null],
    ]);
    // Each version holds its deployment's value.
    for (const [i, d] of made.entries()) {
      const read = expectOk(await admin('GET', `${S}/SESSION_KEY?env=staging&version=${i + 2}`), 200, SecretWithValue);
      expect(read.value).toBe(d.generated.SESSION_KEY);
    }
    const shown = expectOk(await admin('GET', `/v1/deployments/${made[0]?.id}`), 200, Deployment);
    const adminId = (await admin('GET', '/v1/auth/whoami')).json().identityId as string;
    expect(shown).toMatchObject({
      id: made[0]?.id,
      environment: 'staging',
      tier: 'local',
      bundles: ['sandbox/app'],
      createdBy: { id: adminId },
      revokedAt: null,
      revocation: null,
    });
    expect(shown.received).toEqual([
      expect.objectContaining({
        path: 'sandbox/app/SESSION_KEY',
        version: 2,
        action: 'generate',
        via: 'created',
        reads: 1,
      }),
    ]);
    // Listed newest first, by environment and by a secret they received.
    const all = expectOk(await admin('GET', '/v1/deployments'), 200, DeploymentPage);
    expect(all.items.map((d) => d.id)).toEqual(made.map((d) => d.id).reverse());
    const page1 = expectOk(await admin('GET', '/v1/deployments?limit=2'), 200, DeploymentPage);
    const page2 = expectOk(
      await admin('GET', `/v1/deployments?limit=2&cursor=${page1.nextCursor}`),
      200,
      DeploymentPage,
    );
    expect([...page1.items, ...page2.items].map((d) => d.id)).toEqual(all.items.map((d) => d.id));
    expect(page2.nextCursor).toBeNull();
    expect(expectOk(await admin('GET', '/v1/deployments?env=default'), 200, DeploymentPage).items).toEqual([]);
    const withDb = expectOk(await admin('GET', '/v1/deployments?secret=sandbox/app/DATABASE_URL'), 200, DeploymentPage);
    expect(withDb.items).toEqual([]); // stripped from local and desktop: never received
    const withKey = expectOk(await admin('GET', '/v1/deployments?secret=sandbox/app/SESSION_KEY'), 200, DeploymentPage);
    expect(withKey.items).toHaveLength(3);
    // Another tenant finds none of it.
    const other = (await tenantCtx(t, root)).tenant.adminToken;
    expectError(await sender(t.app, other)('GET', `/v1/deployments/${made[0]?.id}`), 404, 'not_found');
    expect(tenant.tenant.id).toBeTruthy();
  });

  it('a bundle read for a deployment gets only what its plan injects and generated for it, and is recorded', async () => {
    const { admin, tenant } = await world();
    const first = await deploy(admin, 'desktop');
    const second = await deploy(admin, 'desktop');
    const runner = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      name: 'desktop-runner',
      policies: [{ path: 'sandbox/app/*', capabilities: ['read'], environments: ['staging'] }],
    });
    const run = sender(t.app, runner.token);
    const read = expectOk(await run('GET', `/v1/bundles/sandbox/app?env=staging&deployment=${first.id}`), 200, Bundle);
    // desktop: TELEMETRY_KEY and FEATURE_FLAGS injected, SESSION_KEY the first deployment's own; no stripped or
    // prompted secret.
    expect(Object.keys(read.values).sort()).toEqual(['FEATURE_FLAGS', 'SESSION_KEY', 'TELEMETRY_KEY']);
    expect(read.values.SESSION_KEY).toBe(first.generated.SESSION_KEY);
    expect(read.versions).toEqual({ FEATURE_FLAGS: 1, SESSION_KEY: 2, TELEMETRY_KEY: 1 });
    // The plain bundle read still gets everything current (the second deployment's value).
    const plain = expectOk(await run('GET', '/v1/bundles/sandbox/app?env=staging'), 200, Bundle);
    expect(plain.values.SESSION_KEY).toBe(second.generated.SESSION_KEY);
    await run('GET', `/v1/bundles/sandbox/app?env=staging&deployment=${first.id}`);

    // The service may read, not list: it still sees the deployment it runs, as far as it may read it.
    const shown = expectOk(await run('GET', `/v1/deployments/${first.id}`), 200, Deployment);
    const runs = shown.received.filter((r) => r.via === 'run');
    expect(runs.map((r) => [r.path, r.version, r.action, r.by.name, r.reads]).sort()).toEqual([
      ['sandbox/app/FEATURE_FLAGS', 1, 'inject', 'desktop-runner', 2],
      ['sandbox/app/SESSION_KEY', 2, 'generate', 'desktop-runner', 2],
      ['sandbox/app/TELEMETRY_KEY', 1, 'inject', 'desktop-runner', 2],
    ]);
    // The read's audit event names the deployment and what it returned.
    const { rows } = await owner.query(
      `select details from coffer.audit_events where tenant_id = $1 and action = 'bundles.read'
       and details->>'deployment' = $2 order by seq`,
      [tenant.tenant.id, first.id],
    );
    expect(rows.map((r) => r.details.secrets)).toEqual([
      'FEATURE_FLAGS@1,SESSION_KEY@2,TELEMETRY_KEY@1',
      'FEATURE_FLAGS@1,SESSION_KEY@2,TELEMETRY_KEY@1',
    ]);
    // Another environment or bundle than the deployment's is refused; an unknown deployment is not found.
    const elsewhere = expectError(
      await run('GET', `/v1/bundles/sandbox/app?deployment=${first.id}`),
      422,
      'unprocessable',
    );
    expect(elsewhere.message).toContain('is in environment staging, not default');
    expectError(
      await admin('GET', `/v1/bundles/sandbox/other?env=staging&deployment=${first.id}`),
      422,
      'unprocessable',
    );
    expectError(
      await admin(
        'GET',
        `/v1/bundles/sandbox/app?env=staging&deployment=${'0'.repeat(8)}-0000-7000-8000-${'0'.repeat(12)}`,
      ),
      404,
      'not_found',
    );
  });

  it('a service deploys what its policies allow: list to plan a name, write to generate it', async () => {
    const { tenant } = await world();
    const lister = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      policies: [{ path: 'sandbox/app/*', capabilities: ['list'], environments: ['staging'] }],
    });
    const denied = expectError(
      await sender(t.app, lister.token)('POST', '/v1/deployments', {
        name: 'ci',
        environment: 'staging',
        tier: 'local',
        bundles: ['sandbox/app'],
      }),
      403,
      'forbidden',
    );
    expect(denied.details).toEqual([
      { path: 'sandbox/app/SESSION_KEY', message: 'no write capability to generate it' },
      { path: 'sandbox/app/OPENAI_KEY', message: 'no write capability to make the intake link of it' },
    ]);
    const ci = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      policies: [
        { path: 'sandbox/app/SESSION_KEY', capabilities: ['list', 'write'], environments: ['staging'] },
        { path: 'sandbox/app/FEATURE_FLAGS', capabilities: ['list'], environments: ['staging'] },
      ],
    });
    const made = await deploy(sender(t.app, ci.token), 'local');
    // Names it may not list are not in its plan.
    expect(actions(made.plan)).toEqual({ FEATURE_FLAGS: 'inject', SESSION_KEY: 'generate' });
    const elsewhere = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      policies: [{ path: 'sandbox/app/*', capabilities: ['list', 'write'] }],
    });
    // staging is not among its environments: for it, staging does not exist.
    expectError(
      await sender(t.app, elsewhere.token)('POST', '/v1/deployments/plan', {
        environment: 'staging',
        tier: 'local',
        bundles: ['sandbox/app'],
      }),
      404,
      'not_found',
    );
    expectError(await sender(t.app, elsewhere.token)('GET', `/v1/deployments/${made.id}`), 404, 'not_found');
  });
});

describe('deployments: consumers and revocation that is safe', () => {
  it('consumers per identity and deployment: last read, last version, through a bundle or not', async () => {
    const { admin, tenant, S } = await world();
    const reader = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      name: 'reader',
      policies: [{ path: 'sandbox/app/*', capabilities: ['read'], environments: ['staging'] }],
    });
    const bundler = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      name: 'bundler',
      policies: [{ path: 'sandbox/app/*', capabilities: ['read'], environments: ['staging'] }],
    });
    const r = sender(t.app, reader.token);
    const b = sender(t.app, bundler.token);
    await r('GET', `${S}/FEATURE_FLAGS?env=staging`);
    await b('GET', '/v1/bundles/sandbox/app?env=staging');
    expectOk(await admin('PUT', `${S}/FEATURE_FLAGS?env=staging`, { value: '{"beta":false}' }), 200, SecretMetadata);
    await r('GET', `${S}/FEATURE_FLAGS?env=staging`);
    const d = await deploy(admin, 'cloud');
    await b('GET', `/v1/bundles/sandbox/app?env=staging&deployment=${d.id}`);
    // Reads in another environment are another secret's.
    await admin('PUT', `${S}/FEATURE_FLAGS`, { value: 'default-env' });
    await admin('GET', `${S}/FEATURE_FLAGS`);

    const c = expectOk(await admin('GET', `${S}/FEATURE_FLAGS/consumers?env=staging`), 200, SecretConsumers);
    expect(c.current).toBe(2);
    const rows = c.items.map((i) => [i.identity.name, i.deployment, i.lastVersion, i.viaBundle, i.source, i.reads]);
    expect(rows).toEqual([
      ['bundler', d.id, 2, true, 'bundle', 1],
      ['reader', null, 2, false, 'secret', 2],
      ['bundler', null, 1, true, 'bundle', 1],
    ]);
    // The auditor may ask; a service only with rotate on the path.
    const auditor = await createIdentity(t.app, tenant.adminToken, { role: 'auditor' });
    expectOk(
      await sender(t.app, auditor.token)('GET', `${S}/FEATURE_FLAGS/consumers?env=staging`),
      200,
      SecretConsumers,
    );
    expectError(await r('GET', `${S}/FEATURE_FLAGS/consumers?env=staging`), 403, 'forbidden');
    expectError(await admin('GET', `${S}/NOPE/consumers?env=staging`), 404, 'not_found');
  });

  it('revoking the old version is refused while a consumer still reads it, allowed once it moved; then 410', async () => {
    const { admin, tenant, S } = await world();
    const svc = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      name: 'payments-api',
      policies: [{ path: 'sandbox/app/*', capabilities: ['read', 'rotate'], environments: ['staging'] }],
    });
    const s = sender(t.app, svc.token);
    expectOk(await s('GET', `${S}/DATABASE_URL?env=staging`), 200, SecretWithValue);
    expectOk(
      await admin('POST', `${S}/DATABASE_URL/rotate?env=staging`, {
        value: 'postgres://app:pw2@db.internal:5432/app',
        notes: 'quarterly rotation',
      }),
      200,
      SecretMetadata,
    );
    const before = expectOk(await admin('GET', `${S}/DATABASE_URL/rotation-status?env=staging`), 200, RotationStatus);
    expect(before).toMatchObject({
      current: 2,
      previous: 1,
      graceHours: 24,
      safeToRevoke: false,
      previousRevokedAt: null,
    });
    expect(before.consumersOnPrevious.map((c) => [c.identity.name, c.lastVersion])).toEqual([['payments-api', 1]]);

    const refused = expectError(
      await admin('POST', `${S}/DATABASE_URL/versions/1/revoke?env=staging`, {}),
      409,
      'consumers_pending',
    );
    expect(refused.message).toContain('payments-api');
    expect(refused.details).toEqual([{ path: 'consumers.0', message: expect.stringContaining('payments-api') }]);
    // Still served: the refusal changed nothing.
    expectOk(await s('GET', `${S}/DATABASE_URL?env=staging&version=1`), 200, SecretWithValue);
    expectError(await admin('POST', `${S}/DATABASE_URL/versions/2/revoke?env=staging`, {}), 409, 'conflict');
    expectError(await admin('POST', `${S}/DATABASE_URL/versions/9/revoke?env=staging`, {}), 404, 'not_found');

    // The consumer moves to the new version: nobody is left on the old one.
    expectOk(await s('GET', `${S}/DATABASE_URL?env=staging`), 200, SecretWithValue);
    const after = expectOk(await s('GET', `${S}/DATABASE_URL/rotation-status?env=staging`), 200, RotationStatus);
    expect(after).toMatchObject({ safeToRevoke: true, consumersOnPrevious: [] });
    const revoked = expectOk(
      await s('POST', `${S}/DATABASE_URL/versions/1/revoke?env=staging`, { notes: 'old password' }),
      200,
      RevokedVersion,
    );
    expect(revoked).toMatchObject({ version: 1, forced: false, consumersPending: [] });
    const gone = expectError(await s('GET', `${S}/DATABASE_URL?env=staging&version=1`), 410, 'gone');
    expect(gone.message).toContain('was revoked at');
    expectError(await admin('GET', `${S}/DATABASE_URL?env=staging&version=previous`), 410, 'gone');
    expectError(await admin('POST', `${S}/DATABASE_URL/versions/1/revoke?env=staging`, {}), 409, 'conflict');
    const versions = expectOk(await admin('GET', `${S}/DATABASE_URL/versions?env=staging`), 200, SecretVersions);
    expect(versions.items.find((x) => x.version === 1)?.revokedAt).toBe(revoked.revokedAt);

    // The rotation log has both, with the environment, the owning team and the notes.
    const log = expectOk(await admin('GET', '/v1/rotation/log?env=staging'), 200, RotationLog);
    expect(
      log.items.map((e) => [e.event, e.path, e.fromVersion, e.toVersion, e.environment, e.ownerTeam, e.notes]),
    ).toEqual([
      ['revoke', 'sandbox/app/DATABASE_URL', 1, null, 'staging', 'platform', 'old password'],
      ['rotate', 'sandbox/app/DATABASE_URL', 1, 2, 'staging', 'platform', 'quarterly rotation'],
    ]);
  });

  it('force revokes while consumers read, naming them; a live deployment made on a version holds it', async () => {
    const { admin, tenant, S } = await world();
    const svc = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      policies: [{ path: 'sandbox/app/*', capabilities: ['read'], environments: ['staging'] }],
    });
    await sender(t.app, svc.token)('GET', `${S}/TELEMETRY_KEY?env=staging`);
    await admin('POST', `${S}/TELEMETRY_KEY/rotate?env=staging`, { value: v('telemetry') });
    const forced = expectOk(
      await admin('POST', `${S}/TELEMETRY_KEY/versions/1/revoke?env=staging`, { force: true }),
      200,
      RevokedVersion,
    );
    expect(forced.forced).toBe(true);
    expect(forced.consumersPending.map((c) => c.identity.id)).toEqual([svc.identity.id]);

    // SESSION_KEY v2 was generated for a deployment; v3 for the next. The first deployment still holds v2.
    const first = await deploy(admin, 'local');
    await deploy(admin, 'local');
    const status = expectOk(await admin('GET', `${S}/SESSION_KEY/rotation-status?env=staging`), 200, RotationStatus);
    expect(status).toMatchObject({ current: 3, previous: 2, safeToRevoke: false });
    expect(status.consumersOnPrevious.map((c) => [c.deployment, c.source])).toEqual([[first.id, 'deployment']]);
    expectError(await admin('POST', `${S}/SESSION_KEY/versions/2/revoke?env=staging`, {}), 409, 'consumers_pending');
  });

  it("a deployment's revocation rotates what was generated for it, revokes its versions, and is recorded", async () => {
    const { admin, S, tenant } = await world();
    const older = await deploy(admin, 'local');
    const d = await deploy(admin, 'local');
    const revoked = expectOk(
      await admin('POST', `/v1/deployments/${d.id}/revoke`, { notes: 'laptop lost' }),
      200,
      RevokedDeployment,
    );
    expect(revoked).toMatchObject({
      id: d.id,
      notes: 'laptop lost',
      rotated: [{ path: 'sandbox/app/SESSION_KEY', fromVersion: 3, toVersion: 4 }],
      revokedVersions: [{ path: 'sandbox/app/SESSION_KEY', version: 3 }],
      leasesRevoked: 0,
    });
    // The new current value is new, generated by the tier's generator; the deployment's own is gone at once.
    const now = expectOk(await admin('GET', `${S}/SESSION_KEY?env=staging`), 200, SecretWithValue);
    expect(now.version).toBe(4);
    expect(now.value).toMatch(/^sk_[A-Za-z0-9]{32}$/);
    expect(now.value).not.toBe(d.generated.SESSION_KEY);
    expectError(await admin('GET', `${S}/SESSION_KEY?env=staging&version=3`), 410, 'gone');
    // The older deployment's own value is its own: revoking this one did not cut it off.
    const kept = expectOk(await admin('GET', `${S}/SESSION_KEY?env=staging&version=2`), 200, SecretWithValue);
    expect(kept.value).toBe(older.generated.SESSION_KEY);
    // A revoked deployment reads nothing more, and cannot be revoked twice.
    expectError(await admin('GET', `/v1/bundles/sandbox/app?env=staging&deployment=${d.id}`), 410, 'gone');
    expectError(await admin('POST', `/v1/deployments/${d.id}/revoke`, {}), 409, 'conflict');
    const shown = expectOk(await admin('GET', `/v1/deployments/${d.id}`), 200, Deployment);
    expect(shown.revokedAt).toBe(revoked.revokedAt);
    expect(shown.revocation).toEqual({
      revokedAt: revoked.revokedAt,
      revokedBy: revoked.revokedBy,
      notes: 'laptop lost',
      rotated: revoked.rotated,
      revokedVersions: revoked.revokedVersions,
      leasesRevoked: 0,
    });
    // Revoking the older deployment now revokes its version without a rotation: its value is no longer current.
    const second = expectOk(await admin('POST', `/v1/deployments/${older.id}/revoke`), 200, RevokedDeployment);
    expect(second).toMatchObject({ rotated: [], revokedVersions: [{ path: 'sandbox/app/SESSION_KEY', version: 2 }] });
    expect(expectOk(await admin('GET', `${S}/SESSION_KEY?env=staging`), 200, SecretWithValue).version).toBe(4);

    const log = expectOk(await admin('GET', '/v1/rotation/log?env=staging'), 200, RotationLog);
    expect(log.items.map((e) => [e.event, e.fromVersion, e.toVersion, e.deployment, e.notes, e.ownerTeam])).toEqual([
      ['revoke', 2, null, older.id, `revocation of deployment ${older.name}`, 'web'],
      ['revoke', 3, null, d.id, 'laptop lost', 'web'],
      ['rotate', 3, 4, d.id, 'laptop lost', 'web'],
    ]);
    const events = await owner.query(
      `select action, details from coffer.audit_events where tenant_id = $1 and action = 'deployments.revoke'
       and outcome = 'allowed' order by seq`,
      [tenant.tenant.id],
    );
    expect(events.rows.map((r) => [r.details.rotated, r.details.revoked, r.details.leases])).toEqual([
      [1, 1, 0],
      [0, 1, 0],
    ]);
    // Only admins revoke deployments.
    const auditor = await createIdentity(t.app, tenant.adminToken, { role: 'auditor' });
    expectError(await sender(t.app, auditor.token)('POST', `/v1/deployments/${d.id}/revoke`, {}), 403, 'forbidden');
  });
});

describe('deployments: the inventory', () => {
  it('lists owners, contacts, class and rotation cadence per secret and environment, never a value', async () => {
    const { admin, tenant } = await world();
    await admin('PUT', '/v1/secrets/shared/billing/STRIPE_KEY', {
      value: 'sk_live_inventory_value',
      ownerTeam: 'payments',
      contact: 'payments@example.com',
      class: 'infrastructure',
      rotation: { intervalDays: 30, generator: { length: 32, charset: 'base64url' } },
    });
    const all = expectOk(await admin('GET', '/v1/inventory'), 200, InventoryPage);
    expect(
      all.items.map((i) => [
        i.environment,
        i.path,
        i.class,
        i.ownerTeam,
        i.contact,
        i.rotationIntervalDays,
        i.automatic,
      ]),
    ).toEqual([
      ['default', 'shared/billing/STRIPE_KEY', 'infrastructure', 'payments', 'payments@example.com', 30, true],
      ['staging', 'sandbox/app/DATABASE_URL', 'infrastructure', 'platform', '#platform-oncall', 90, false],
      ['staging', 'sandbox/app/FEATURE_FLAGS', null, null, null, null, false],
      ['staging', 'sandbox/app/OPENAI_KEY', 'user', null, null, null, false],
      ['staging', 'sandbox/app/SESSION_KEY', 'service', 'web', 'web@example.com', 30, true],
      ['staging', 'sandbox/app/TELEMETRY_KEY', 'infrastructure', null, null, null, false],
    ]);
    expect(JSON.stringify(all)).not.toContain('sk_live_inventory_value');
    expect(all.items[0]?.nextRotationAt).not.toBeNull();
    const team = expectOk(await admin('GET', '/v1/inventory?team=payments'), 200, InventoryPage);
    expect(team.items.map((i) => i.name)).toEqual(['STRIPE_KEY']);
    const staging = expectOk(await admin('GET', '/v1/inventory?env=staging&class=infrastructure'), 200, InventoryPage);
    expect(staging.items.map((i) => i.name)).toEqual(['DATABASE_URL', 'TELEMETRY_KEY']);
    // Paged: the pages put together are the whole.
    const names: string[] = [];
    let cursor: string | null = null;
    do {
      const page: InventoryPage = expectOk(
        await admin('GET', `/v1/inventory?limit=4${cursor ? `&cursor=${cursor}` : ''}`),
        200,
        InventoryPage,
      );
      names.push(...page.items.map((i) => `${i.environment}:${i.path}`));
      cursor = page.nextCursor;
    } while (cursor);
    expect(names).toEqual(all.items.map((i) => `${i.environment}:${i.path}`));
    const auditor = await createIdentity(t.app, tenant.adminToken, { role: 'auditor' });
    expectOk(await sender(t.app, auditor.token)('GET', '/v1/inventory'), 200, InventoryPage);
    const svc = await createIdentity(t.app, tenant.adminToken, { role: 'service' });
    expectError(await sender(t.app, svc.token)('GET', '/v1/inventory'), 403, 'forbidden');
  });
});
