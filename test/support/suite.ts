import type pg from 'pg';
import { afterAll, beforeAll } from 'vitest';
import { createTenant, rootToken, type TestTenant } from './factories.ts';
import { type OpsApi, opsApi } from './ops.ts';
import { ownerClient, type SecretsApi, secretsApi } from './secrets.ts';
import { createTestApp, type TestApp } from './test-app.ts';

export interface OwnerSuite {
  /** The app under test (in-process, `inject`). */
  t: TestApp;
  /** A connection as the schema owner, for inspection and deliberate tampering. */
  owner: pg.Client;
  /** The platform admin's token. */
  root: string;
}

/**
 * The setup most suites share: a test app, an owner connection and the platform admin's token, made before the
 * file's tests and closed after them. `set` hands them to the file's own variables:
 * `ownerSuite((s) => ({ t, owner, root } = s));`.
 */
export function ownerSuite(set: (s: OwnerSuite) => void): void {
  let s: OwnerSuite | undefined;
  beforeAll(async () => {
    const t = await createTestApp();
    s = { t, owner: await ownerClient(), root: await rootToken(t.app) };
    set(s);
  });
  afterAll(async () => {
    await s?.owner.end();
    await s?.t.close();
  });
}

export interface ListeningSuite {
  t: TestApp;
  /** Where the app listens on loopback, for clients that speak real HTTP (the SDK, the CLI as a process). */
  url: string;
}

/** A test app listening on a free loopback port for the file's tests, closed after them. */
export function listeningSuite(set: (s: ListeningSuite) => void): void {
  let t: TestApp | undefined;
  beforeAll(async () => {
    t = await createTestApp();
    set({ t, url: await t.app.listen({ host: '127.0.0.1', port: 0 }) });
  });
  afterAll(async () => {
    await t?.close();
  });
}

/** A fresh tenant and clients for its admin: what each test of the audit, rotation, key and webhook suites starts from. */
export interface TenantCtx {
  tenant: TestTenant;
  tid: string;
  api: SecretsApi;
  ops: OpsApi;
}

export async function tenantCtx(t: TestApp, root: string): Promise<TenantCtx> {
  const tenant = await createTenant(t.app, root);
  return {
    tenant,
    tid: tenant.tenant.id,
    api: secretsApi(t.app, tenant.adminToken),
    ops: opsApi(t.app, tenant.adminToken),
  };
}
