import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  CreatePlatformAdminResponse,
  PlatformAdmin,
  PlatformAdminList,
  RotateClientSecretResponse,
} from '@coffer/contracts';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { linkKeys } from '../../apps/api/src/audit/audit.digest.ts';
import { createPool, Database } from '../../apps/api/src/db/database.ts';
import { ensurePlatformAdmin } from '../../apps/api/src/tenants/bootstrap.ts';
import { resetRootSecret } from '../../apps/api/src/tenants/break-glass.ts';
import { testKeyring } from '../support/audit.ts';
import { migrateScratch, withClient } from '../support/db.ts';
import { bearer, createTenant, login } from '../support/factories.ts';
import { expectError, expectOk } from '../support/secrets.ts';
import { type ScratchDatabase, scratchDatabase } from '../support/server-process.ts';
import { createTestApp, type TestApp } from '../support/test-app.ts';

/**
 * The platform admins' own lifecycle. These tests rotate root's secret and disable root, which every other file
 * logs in as: so they run on a database of their own, bootstrapped here with a secret of their own.
 */

let scratch: ScratchDatabase;
let t: TestApp;
const bootstrapSecret = `bootstrap-${randomBytes(24).toString('base64url')}`;
/** Root's secret once the first test rotated it. */
let rootSecretNow = bootstrapSecret;

beforeAll(async () => {
  scratch = await scratchDatabase();
  await migrateScratch(scratch.ownerUrl);
  t = await createTestApp({ DATABASE_URL: scratch.ownerUrl, DATABASE_APP_URL: scratch.appUrl });
  await ensurePlatformAdmin(t.db, {
    bootstrapSecret,
    dataDir: os.tmpdir(),
    log: pino({ level: 'silent' }),
    macs: t.macs,
  });
});
afterAll(async () => {
  await t?.close();
  await scratch?.drop();
});

const send = (method: 'GET' | 'POST' | 'PATCH', url: string, token: string | null, payload?: object) =>
  t.app.inject({ method, url, headers: token ? bearer(token) : {}, ...(payload ? { payload } : {}) });
const loginStatus = async (clientId: string, clientSecret: string) =>
  (await t.app.inject({ method: 'POST', url: '/v1/auth/token', payload: { clientId, clientSecret } })).statusCode;

describe('platform admins', () => {
  it('bootstrap secret forever: once root rotates its own secret, the bootstrap secret and its old tokens stop working', async () => {
    const oldToken = await login(t.app, 'root', bootstrapSecret);
    const me = expectOk(await send('GET', '/v1/platform/admins', oldToken), 200, PlatformAdminList).items;
    const root = me.find((a) => a.clientId === 'root');
    expect(root).toBeDefined();
    const rotated = expectOk(
      await send('POST', `/v1/platform/admins/${root?.id}/rotate-secret`, oldToken),
      200,
      RotateClientSecretResponse,
    );
    expect(rotated.clientId).toBe('root');
    expect(rotated.clientSecret).not.toBe(bootstrapSecret);
    expect(await loginStatus('root', bootstrapSecret)).toBe(401);
    expectError(await send('GET', '/v1/platform/admins', oldToken), 401, 'unauthorized');
    rootSecretNow = rotated.clientSecret;
    const newToken = await login(t.app, 'root', rotated.clientSecret);
    expect((await send('GET', '/v1/platform/admins', newToken)).statusCode).toBe(200);
    // A restart with the bootstrap secret still set does not bring it back.
    await ensurePlatformAdmin(t.db, {
      bootstrapSecret,
      dataDir: os.tmpdir(),
      log: pino({ level: 'silent' }),
      macs: t.macs,
    });
    expect(await loginStatus('root', bootstrapSecret)).toBe(401);
    expect(await loginStatus('root', rotated.clientSecret)).toBe(200);

    // Every change is in the platform's audit chain.
    const rows = await withClient(
      scratch.ownerUrl,
      async (c) =>
        (
          await c.query<{ action: string; outcome: string }>(
            `select action, outcome from coffer.audit_events where action like 'platform.admins.%' order by seq`,
          )
        ).rows,
    );
    expect(rows.map((r) => `${r.action} ${r.outcome}`)).toEqual([
      'platform.admins.list allowed',
      'platform.admins.rotate_secret allowed',
      // The old token, refused.
      'platform.admins.list denied',
      'platform.admins.list allowed',
    ]);
  });

  it('platform lockout: a second platform admin can be added and disable root; the last enabled one cannot be disabled (409)', async () => {
    const rootSecret = rootSecretNow;
    const rootToken = await login(t.app, 'root', rootSecret);
    const second = expectOk(
      await send('POST', '/v1/platform/admins', rootToken, { name: 'second operator' }),
      201,
      CreatePlatformAdminResponse,
    );
    expect(second.admin).toMatchObject({ name: 'second operator', disabled: false });
    const secondToken = await login(t.app, second.admin.clientId, second.clientSecret);
    // The second platform admin is a platform admin: it creates tenants.
    await createTenant(t.app, secondToken);
    const rootId = (
      expectOk(await send('GET', '/v1/platform/admins', secondToken), 200, PlatformAdminList).items.find(
        (a) => a.clientId === 'root',
      ) as PlatformAdmin
    ).id;

    // The second disables root: root's token and secret stop at once.
    expect(
      expectOk(
        await send('PATCH', `/v1/platform/admins/${rootId}`, secondToken, { disabled: true }),
        200,
        PlatformAdmin,
      ).disabled,
    ).toBe(true);
    expectError(await send('GET', '/v1/platform/admins', rootToken), 401, 'unauthorized');
    expect(await loginStatus('root', rootSecret)).toBe(401);
    // Now the second is the last enabled one: it cannot disable itself.
    const last = expectError(
      await send('PATCH', `/v1/platform/admins/${second.admin.id}`, secondToken, { disabled: true }),
      409,
      'conflict',
    );
    expect(last.message).toContain('last enabled platform admin');
    // Re-enabled, root logs in again (with a fresh login: its old token stays dead).
    expectOk(
      await send('PATCH', `/v1/platform/admins/${rootId}`, secondToken, { disabled: false }),
      200,
      PlatformAdmin,
    );
    expect(await loginStatus('root', rootSecret)).toBe(200);
    expectError(await send('GET', '/v1/platform/admins', rootToken), 401, 'unauthorized');

    // A tenant admin never reaches the platform admins, and ids of other identities are not platform admins.
    const tenant = await createTenant(t.app, secondToken);
    expectError(await send('GET', '/v1/platform/admins', tenant.adminToken), 403, 'forbidden');
    expectError(await send('POST', `/v1/platform/admins/${rootId}/rotate-secret`, tenant.adminToken), 403, 'forbidden');
    expectError(
      await send('PATCH', `/v1/platform/admins/${tenant.tenant.id}`, secondToken, { disabled: true }),
      404,
      'not_found',
    );
  });
  it('break glass: with every platform admin secret lost, the owner-run reset gives root a new secret in a 0600 file, audited', async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'coffer-break-glass-'));
    const ownerDb = new Database(
      createPool({
        url: scratch.ownerUrl,
        max: 1,
        acquireTimeoutMs: 5_000,
        statementTimeoutMs: 10_000,
        applicationName: 'test',
        onError: () => undefined,
      }),
    );
    try {
      const lostSecret = rootSecretNow;
      const { credentialsFile, created } = await resetRootSecret(ownerDb, {
        dataDir,
        operator: 'ops-on-call',
        linkKey: linkKeys(testKeyring()),
        macs: t.macs,
      });
      expect(created).toBe(false);
      expect(statSync(credentialsFile).mode & 0o777).toBe(0o600);
      const creds = JSON.parse(readFileSync(credentialsFile, 'utf8')) as { clientId: string; clientSecret: string };
      expect(creds.clientId).toBe('root');
      expect(await loginStatus('root', lostSecret)).toBe(401);
      const token = await login(t.app, 'root', creds.clientSecret);
      expect((await send('GET', '/v1/platform/admins', token)).statusCode).toBe(200);
      const rows = await withClient(
        scratch.ownerUrl,
        async (c) =>
          (
            await c.query<{ details: Record<string, unknown> }>(
              `select details from coffer.audit_events where action = 'platform.admins.break_glass'`,
            )
          ).rows,
      );
      expect(rows.map((r) => r.details)).toEqual([{ operator: 'ops-on-call', created: false }]);
      // The platform chain still verifies with the reset in it.
      expect((await send('GET', '/v1/audit/verify', token)).json()).toMatchObject({ ok: true });
    } finally {
      await ownerDb.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
