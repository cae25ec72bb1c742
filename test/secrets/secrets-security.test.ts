import { generateKeyPairSync, sign } from 'node:crypto';
import {
  Bundle,
  BundleWriteResponse,
  SecretMetadata,
  SecretPage,
  SecretVersions,
  SecretWithValue,
} from '@coffer/contracts';
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { auditRowsFor } from '../support/audit.ts';
import { bearer, createIdentity, type TestTenant } from '../support/factories.ts';
import { expectEmpty, expectError, expectOk, type Response, type SecretsApi, secretsApi } from '../support/secrets.ts';
import { ownerSuite, tenantCtx } from '../support/suite.ts';
import type { TestApp } from '../support/test-app.ts';

let t: TestApp;
let owner: pg.Client;
let root: string;

ownerSuite((s) => {
  ({ t, owner, root } = s);
});

async function seed(api: SecretsApi, path: string, value: string): Promise<void> {
  const res = await api.put(path, { value });
  expect([200, 201]).toContain(res.statusCode);
}

/** One request to each of the nine secrets and bundles routes, aimed at `sandbox/o/KEY`. */
function everyRoute(api: SecretsApi): { route: string; call: () => Promise<Response> }[] {
  return [
    { route: 'PUT secret', call: () => api.put('sandbox/o/KEY', { value: 'attacker-value' }) },
    { route: 'GET secret', call: () => api.get('sandbox/o/KEY') },
    { route: 'GET versions', call: () => api.versions('sandbox/o/KEY') },
    { route: 'GET list', call: () => api.list() },
    { route: 'DELETE secret', call: () => api.remove('sandbox/o/KEY') },
    { route: 'POST restore', call: () => api.restore('sandbox/o/KEY') },
    { route: 'POST destroy', call: () => api.destroy('sandbox/o/KEY', 1) },
    { route: 'GET bundle', call: () => api.bundle('sandbox', 'o') },
    {
      route: 'POST bundle',
      call: () => api.writeBundle('sandbox', 'o', { set: { KEY: { value: 'attacker-value' } } }),
    },
  ];
}

/** A tenant whose sandbox/o/KEY has two versions (v1 'original-1', v2 'original-2'); the rest unchanged. */
async function tenantWithSecret(): Promise<{ tenant: TestTenant; api: SecretsApi }> {
  const r = await tenantCtx(t, root);
  await seed(r.api, 'sandbox/o/KEY', 'original-1');
  await seed(r.api, 'sandbox/o/KEY', 'original-2');
  return r;
}

async function expectUnchanged(api: SecretsApi): Promise<void> {
  expect(expectOk(await api.get('sandbox/o/KEY'), 200, SecretWithValue)).toMatchObject({
    version: 2,
    value: 'original-2',
  });
  expect(expectOk(await api.get('sandbox/o/KEY', 1), 200, SecretWithValue).value).toBe('original-1');
}

describe('authentication', () => {
  it('answers 401 without a token on all nine routes, audits each as denied, and changes nothing', async () => {
    const { api } = await tenantWithSecret();
    const anonymous = secretsApi(t.app, null);
    const routes = everyRoute(anonymous);
    expect(routes).toHaveLength(9);
    for (const { route, call } of routes) {
      const res = await call();
      const err = expectError(res, 401, 'unauthorized');
      expect(res.body, route).not.toContain('original');
      expect(err.message).toBe('a bearer token is required');
      const rows = await auditRowsFor(owner, err.requestId);
      expect(
        rows.map((r) => [r.outcome, r.error_code, r.actor_id]),
        route,
      ).toEqual([['denied', 'unauthorized', null]]);
    }
    await expectUnchanged(api);
  });

  it('answers 401 for a malformed, tampered, unsigned or foreign-signed token', async () => {
    const { tenant, api } = await tenantWithSecret();
    const [header = '', payload = ''] = tenant.adminToken.split('.');
    const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>;
    const kid = (JSON.parse(Buffer.from(header, 'base64url').toString()) as { kid: string }).kid;
    // The same header (kid included) and claims, signed by a key the server never issued.
    const foreignKey = generateKeyPairSync('ed25519').privateKey;
    const foreignBody = `${b64({ alg: 'EdDSA', typ: 'JWT', kid })}.${b64(claims)}`;
    const foreign = `${foreignBody}.${sign(null, Buffer.from(foreignBody), foreignKey).toString('base64url')}`;
    const unsigned = `${b64({ alg: 'none', typ: 'JWT', kid })}.${b64(claims)}.`;
    const escalated = `${header}.${b64({ ...claims, role: 'admin', tid: '00000000-0000-0000-0000-000000000000' })}.${tenant.adminToken.split('.')[2]}`;
    for (const authorization of [
      'Bearer not-a-jwt',
      `Basic ${Buffer.from('a:b').toString('base64')}`,
      `Bearer ${header}.${payload}.${'A'.repeat(86)}`,
      `Bearer ${foreign}`,
      `Bearer ${unsigned}`,
      `Bearer ${escalated}`,
      `bearer ${tenant.adminToken}`,
    ]) {
      const res = await api.send('GET', '/v1/secrets/sandbox/o/KEY', undefined, { authorization });
      expectError(res, 401, 'unauthorized');
      expect(res.body).not.toContain('original');
    }
  });
});

describe('roles', () => {
  it('refuses auditors and the platform admin with 403 on all nine routes', async () => {
    const { tenant, api } = await tenantWithSecret();
    const auditor = await createIdentity(t.app, tenant.adminToken, { role: 'auditor' });
    for (const [who, token] of [
      ['auditor', auditor.token],
      ['root', root],
    ] as const) {
      for (const { route, call } of everyRoute(secretsApi(t.app, token))) {
        const res = await call();
        expectError(res, 403, 'forbidden');
        expect(res.body, `${who} ${route}`).not.toContain('original');
        const rows = await auditRowsFor(owner, res.headers['x-request-id'] as string);
        expect(
          rows.map((r) => [r.outcome, r.error_code]),
          `${who} ${route}`,
        ).toEqual([['denied', 'forbidden']]);
      }
    }
    await expectUnchanged(api);
  });
});

describe('tenant isolation', () => {
  it("answers another tenant's secret exactly like a missing one, and never touches it", async () => {
    const { api: victim } = await tenantWithSecret();
    await seed(victim, 'sandbox/o/OTHER', 'other-1');
    expectEmpty(await victim.remove('sandbox/o/OTHER'));
    const { api: intruder } = await tenantCtx(t, root);

    const compare = async (name: string, foreign: Response, missing: Response) => {
      expect(foreign.statusCode, name).toBe(missing.statusCode);
      const a = expectError(foreign, missing.statusCode, 'not_found');
      const b = expectError(missing, missing.statusCode, 'not_found');
      expect({ code: a.code, message: a.message, details: a.details }, name).toEqual({
        code: b.code,
        message: b.message,
        details: b.details,
      });
      expect(Object.keys(foreign.json().error as object).sort()).toEqual(
        Object.keys(missing.json().error as object).sort(),
      );
      expect(foreign.body).not.toContain('original');
    };

    await compare('GET', await intruder.get('sandbox/o/KEY'), await intruder.get('sandbox/o/NOPE'));
    await compare('GET ?version', await intruder.get('sandbox/o/KEY', 1), await intruder.get('sandbox/o/NOPE', 1));
    await compare('versions', await intruder.versions('sandbox/o/KEY'), await intruder.versions('sandbox/o/NOPE'));
    await compare('DELETE', await intruder.remove('sandbox/o/KEY'), await intruder.remove('sandbox/o/NOPE'));
    await compare('purge', await intruder.remove('sandbox/o/KEY', true), await intruder.remove('sandbox/o/NOPE', true));
    await compare('restore', await intruder.restore('sandbox/o/OTHER'), await intruder.restore('sandbox/o/NOPE'));
    await compare('destroy', await intruder.destroy('sandbox/o/KEY', 1), await intruder.destroy('sandbox/o/NOPE', 1));

    // The intruder's own view: an empty bundle and an empty list, like an owner nobody uses.
    expect(expectOk(await intruder.bundle('sandbox', 'o'), 200, Bundle)).toEqual({ values: {}, versions: {} });
    expect(expectOk(await intruder.list(), 200, SecretPage).items).toEqual([]);
    // Compare-and-set against a version that exists only in the other tenant: a conflict, as for a new name.
    expectError(await intruder.put('sandbox/o/KEY', { value: 'x', ifVersion: 2 }), 409, 'conflict');
    expectError(await intruder.writeBundle('sandbox', 'o', { delete: ['KEY'] }), 409, 'conflict');
    // A PUT to the same path creates the intruder's own secret at version 1, nothing else.
    expect(expectOk(await intruder.put('sandbox/o/KEY', { value: 'intruder' }), 201, SecretMetadata).version).toBe(1);

    await expectUnchanged(victim);
    expect(expectOk(await victim.versions('sandbox/o/KEY'), 200, SecretVersions).items).toHaveLength(2);
    expect(expectOk(await victim.restore('sandbox/o/OTHER'), 200, SecretMetadata).name).toBe('OTHER');
  });
});

describe('service identities', () => {
  const POLICIES = [
    { path: 'sandbox/app/*', capabilities: ['read', 'list'] as const },
    // More specific than sandbox/app/*: grants write (and read) but no list.
    { path: 'sandbox/app/WRITABLE', capabilities: ['read', 'write'] as const },
    { path: 'sandbox/app/DEL_*', capabilities: ['read', 'list', 'delete'] as const },
    // The most specific policy removes read from one name that sandbox/app/* would allow.
    { path: 'sandbox/app/HIDDEN', capabilities: ['list'] as const },
    { path: 'shared/**', capabilities: ['list'] as const },
  ];

  async function serviceSetup() {
    const { tenant, api: admin } = await tenantCtx(t, root);
    for (const p of [
      'sandbox/app/PLAIN',
      'sandbox/app/WRITABLE',
      'sandbox/app/DEL_ME',
      'sandbox/app/HIDDEN',
      'sandbox/other/PLAIN',
      'shared/grp/LISTED',
      'user/u/PRIVATE',
    ])
      await seed(admin, p, `value of ${p}`);
    const svc = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      policies: POLICIES.map((p) => ({ path: p.path, capabilities: [...p.capabilities] })),
    });
    return { tenant, admin, svc, api: secretsApi(t.app, svc.token) };
  }

  it('reads only where a policy grants read, and the most specific policy decides', async () => {
    const { api } = await serviceSetup();
    expect(expectOk(await api.get('sandbox/app/PLAIN'), 200, SecretWithValue).value).toBe('value of sandbox/app/PLAIN');
    expect(expectOk(await api.get('sandbox/app/WRITABLE'), 200, SecretWithValue).value).toBe(
      'value of sandbox/app/WRITABLE',
    );
    for (const path of ['sandbox/app/HIDDEN', 'sandbox/other/PLAIN', 'shared/grp/LISTED', 'user/u/PRIVATE']) {
      const res = await api.get(path);
      const err = expectError(res, 403, 'forbidden');
      expect(err.message).toContain('read');
      expect(res.body).not.toContain('value of');
    }
    // A name that does not exist under a readable path is 404; under an unreadable one, 403 (existence is not told).
    expectError(await api.get('sandbox/app/MISSING'), 404, 'not_found');
    expectError(await api.get('sandbox/other/MISSING'), 403, 'forbidden');
    // versions needs read or list.
    expectOk(await api.versions('sandbox/app/HIDDEN'), 200, SecretVersions);
    expectOk(await api.versions('shared/grp/LISTED'), 200, SecretVersions);
    expectError(await api.versions('user/u/PRIVATE'), 403, 'forbidden');
  });

  it('writes only where a policy grants write', async () => {
    const { admin, api } = await serviceSetup();
    expect(expectOk(await api.put('sandbox/app/WRITABLE', { value: 'svc-2' }), 200, SecretMetadata).version).toBe(2);
    for (const path of ['sandbox/app/PLAIN', 'sandbox/app/NEW', 'sandbox/other/PLAIN', 'shared/grp/LISTED']) {
      const err = expectError(await api.put(path, { value: 'svc' }), 403, 'forbidden');
      expect(err.message).toContain('write');
    }
    expect(expectOk(await admin.get('sandbox/app/PLAIN'), 200, SecretWithValue).version).toBe(1);
    expectError(await admin.get('sandbox/app/NEW'), 404, 'not_found');
  });

  it('deletes, restores and destroys only where a policy grants delete', async () => {
    const { admin, api } = await serviceSetup();
    await seed(admin, 'sandbox/app/DEL_ME', 'second');
    expectError(await api.remove('sandbox/app/PLAIN'), 403, 'forbidden');
    expectError(await api.remove('sandbox/app/WRITABLE', true), 403, 'forbidden');
    expectError(await api.destroy('sandbox/app/PLAIN', 1), 403, 'forbidden');
    expectEmpty(await api.destroy('sandbox/app/DEL_ME', 1));
    expectEmpty(await api.remove('sandbox/app/DEL_ME'));
    expect(expectOk(await api.restore('sandbox/app/DEL_ME'), 200, SecretMetadata).version).toBe(2);
    expectEmpty(await api.remove('sandbox/app/DEL_ME'));
    expectError(await admin.restore('sandbox/app/PLAIN'), 409, 'conflict');
    expect(expectOk(await admin.get('sandbox/app/PLAIN'), 200, SecretWithValue).version).toBe(1);
    expectError(await admin.get('sandbox/app/DEL_ME'), 404, 'not_found');
  });

  it('lists only the names it may list', async () => {
    const { api } = await serviceSetup();
    const page = expectOk(await api.list(), 200, SecretPage);
    expect(page.items.map((i) => `${i.kind}/${i.owner}/${i.name}`).sort()).toEqual([
      'sandbox/app/DEL_ME',
      'sandbox/app/HIDDEN',
      'sandbox/app/PLAIN',
      'shared/grp/LISTED',
    ]);
    // The same set, a page of one at a time.
    const seen: string[] = [];
    let cursor: string | undefined;
    for (let i = 0; i < 20; i++) {
      const p = expectOk(await api.list({ limit: 1, cursor }), 200, SecretPage);
      seen.push(...p.items.map((x) => `${x.kind}/${x.owner}/${x.name}`));
      if (!p.nextCursor) break;
      cursor = p.nextCursor;
    }
    expect(seen.sort()).toEqual(page.items.map((i) => `${i.kind}/${i.owner}/${i.name}`).sort());
    expect(expectOk(await api.list({ kind: 'user' }), 200, SecretPage).items).toEqual([]);
  });

  // Regression: a page of a service's list once came back empty with no cursor when the first scanned rows held
  // nothing it may list, so the client stopped before reaching its secrets.
  it('lists its secrets even when many rows it may not list sort before them', async () => {
    const { tenant, api: admin } = await tenantCtx(t, root);
    const set: Record<string, { value: string }> = {};
    for (let i = 0; i < 45; i++) set[`N${String(i).padStart(2, '0')}`] = { value: 'filler' };
    expectOk(await admin.writeBundle('sandbox', 'aaa', { set }), 200, BundleWriteResponse);
    await seed(admin, 'user/zed/MINE', 'mine');
    const svc = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      policies: [{ path: 'user/zed/*', capabilities: ['list'] }],
    });
    const api = secretsApi(t.app, svc.token);
    const seen: string[] = [];
    let cursor: string | undefined;
    for (let i = 0; i < 100; i++) {
      const p = expectOk(await api.list({ limit: 1, cursor }), 200, SecretPage);
      seen.push(...p.items.map((x) => x.name));
      if (!p.nextCursor) break;
      cursor = p.nextCursor;
    }
    expect(seen).toEqual(['MINE']);
  });

  it('lists soft-deleted secrets with ?deleted=true: only those, only the names it may list, none of another tenant', async () => {
    const { tenant, api: admin } = await tenantCtx(t, root);
    await seed(admin, 'sandbox/del/LIVE', 'x');
    await seed(admin, 'sandbox/del/MINE', 'x');
    await seed(admin, 'sandbox/del/HIDDEN', 'x');
    expectEmpty(await admin.remove('sandbox/del/MINE'));
    expectEmpty(await admin.remove('sandbox/del/HIDDEN'));
    const names = async (api: SecretsApi, q: Record<string, string> = {}) =>
      expectOk(await api.list({ owner: 'del', ...q }), 200, SecretPage).items.map((x) => x.name);
    expect(await names(admin, { deleted: 'true' })).toEqual(['HIDDEN', 'MINE']);
    expect(await names(admin)).toEqual(['LIVE']);
    expect(await names(admin, { deleted: 'false' })).toEqual(['LIVE']);
    const svc = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      policies: [{ path: 'sandbox/del/M*', capabilities: ['list'] }],
    });
    expect(await names(secretsApi(t.app, svc.token), { deleted: 'true' })).toEqual(['MINE']);
    const { api: intruder } = await tenantCtx(t, root);
    expect(await names(intruder, { deleted: 'true' })).toEqual([]);
    expectError(await admin.list({ deleted: 'yes' }), 400, 'validation_failed');
  });

  it('gets a bundle of only the names it may read', async () => {
    const { api } = await serviceSetup();
    const bundle = expectOk(await api.bundle('sandbox', 'app'), 200, Bundle);
    expect(Object.keys(bundle.values).sort()).toEqual(['DEL_ME', 'PLAIN', 'WRITABLE']);
    expect(bundle.values.PLAIN).toBe('value of sandbox/app/PLAIN');
    expect(bundle.values).not.toHaveProperty('HIDDEN');
    expect(Object.keys(bundle.versions).sort()).toEqual(['DEL_ME', 'PLAIN', 'WRITABLE']);
    expect(expectOk(await api.bundle('user', 'u'), 200, Bundle)).toEqual({ values: {}, versions: {} });
    expect(expectOk(await api.bundle('shared', 'grp'), 200, Bundle)).toEqual({ values: {}, versions: {} });
  });

  it('writes a bundle only when it may change every name in it, and names each refused one', async () => {
    const { admin, api } = await serviceSetup();
    const err = expectError(
      await api.writeBundle('sandbox', 'app', {
        set: { WRITABLE: { value: 'w' }, PLAIN: { value: 'p' } },
        delete: ['DEL_ME', 'HIDDEN'],
      }),
      403,
      'forbidden',
    );
    expect(err.details?.map((d) => d.path).sort()).toEqual(['body.delete.HIDDEN', 'body.set.PLAIN']);
    expect(expectOk(await admin.get('sandbox/app/WRITABLE'), 200, SecretWithValue).version).toBe(1);
    expect(expectOk(await admin.get('sandbox/app/DEL_ME'), 200, SecretWithValue).version).toBe(1);

    expect(
      expectOk(
        await api.writeBundle('sandbox', 'app', {
          set: { WRITABLE: { value: 'w2', ifVersion: 1 } },
          delete: ['DEL_ME'],
        }),
        200,
        BundleWriteResponse,
      ),
    ).toEqual({ versions: { WRITABLE: 2, DEL_ME: null } });
  });

  it('applies a policy narrowed by PATCH on the very next request with the same token', async () => {
    const { tenant, svc, api } = await serviceSetup();
    expectOk(await api.get('sandbox/app/PLAIN'), 200, SecretWithValue);
    expectOk(await api.put('sandbox/app/WRITABLE', { value: 'before' }), 200, SecretMetadata);
    const patch = await t.app.inject({
      method: 'PATCH',
      url: `/v1/identities/${svc.identity.id}`,
      headers: bearer(tenant.adminToken),
      payload: { policies: [{ path: 'sandbox/app/PLAIN', capabilities: ['list'] }] },
    });
    expect(patch.statusCode).toBe(200);
    expectError(await api.get('sandbox/app/PLAIN'), 403, 'forbidden');
    expectError(await api.put('sandbox/app/WRITABLE', { value: 'after' }), 403, 'forbidden');
    expect(expectOk(await api.bundle('sandbox', 'app'), 200, Bundle)).toEqual({ values: {}, versions: {} });
    expect(expectOk(await api.list(), 200, SecretPage).items.map((i) => i.name)).toEqual(['PLAIN']);

    // Widened again: allowed again, same token.
    const widen = await t.app.inject({
      method: 'PATCH',
      url: `/v1/identities/${svc.identity.id}`,
      headers: bearer(tenant.adminToken),
      payload: { policies: [{ path: 'sandbox/app/PLAIN', capabilities: ['read'] }] },
    });
    expect(widen.statusCode).toBe(200);
    expectOk(await api.get('sandbox/app/PLAIN'), 200, SecretWithValue);
  });

  it('stops a disabled service on its next request', async () => {
    const { tenant, svc, api } = await serviceSetup();
    expectOk(await api.get('sandbox/app/PLAIN'), 200, SecretWithValue);
    const res = await t.app.inject({
      method: 'PATCH',
      url: `/v1/identities/${svc.identity.id}`,
      headers: bearer(tenant.adminToken),
      payload: { disabled: true },
    });
    expect(res.statusCode).toBe(200);
    expectError(await api.get('sandbox/app/PLAIN'), 401, 'unauthorized');
  });
});
