import { Bundle, BundleWriteResponse, SecretMetadata } from '@coffer/contracts';
import { describe, expect, it } from 'vitest';
import { createIdentity, createTenant } from '../support/factories.ts';
import { expectError, expectOk, secretsApi } from '../support/secrets.ts';
import { ownerSuite } from '../support/suite.ts';
import type { TestApp } from '../support/test-app.ts';

/** Secret names are keys of bundles: names that are also keys of every object must behave like any other name. */

let t: TestApp;
let root: string;
ownerSuite((s) => {
  ({ t, root } = s);
});

const OBJECT_KEYS = ['constructor', 'toString', 'hasOwnProperty', 'valueOf', '__defineGetter__'];

describe('names that are also object keys', () => {
  it('object keys: a secret named __proto__ is refused when written, instead of being created and then vanishing from bundles', async () => {
    const tenant = await createTenant(t.app, root);
    const api = secretsApi(t.app, tenant.adminToken);
    const err = expectError(await api.put('sandbox/o/__proto__', { value: 'v' }), 400, 'validation_failed');
    expect(JSON.stringify(err.details)).toContain('__proto__');
    expect(expectOk(await api.bundle('sandbox', 'o'), 200, Bundle)).toEqual({ values: {}, versions: {} });
  });

  it('object keys: constructor, toString and the like round-trip through bundle write, bundle read and delete', async () => {
    const tenant = await createTenant(t.app, root);
    const api = secretsApi(t.app, tenant.adminToken);
    const set = Object.fromEntries(OBJECT_KEYS.map((n) => [n, { value: `value of ${n}` }]));
    const written = expectOk(await api.writeBundle('sandbox', 'o', { set }), 200, BundleWriteResponse);
    expect(Object.keys(written.versions).sort()).toEqual([...OBJECT_KEYS].sort());

    const svc = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      policies: [{ path: 'sandbox/o/*', capabilities: ['read'] }],
    });
    for (const reader of [api, secretsApi(t.app, svc.token)]) {
      const bundle = expectOk(await reader.bundle('sandbox', 'o'), 200, Bundle);
      expect(Object.keys(bundle.values).sort()).toEqual([...OBJECT_KEYS].sort());
      for (const n of OBJECT_KEYS) expect(bundle.values[n]).toBe(`value of ${n}`);
    }

    // Deleting `toString` while setting another name is not "both set and deleted".
    const res = await api.writeBundle('sandbox', 'o', { set: { OTHER: { value: 'x' } }, delete: ['toString'] });
    expect(expectOk(res, 200, BundleWriteResponse).versions).toEqual({ OTHER: 1, toString: null });
    const after = expectOk(await api.bundle('sandbox', 'o'), 200, Bundle);
    expect(Object.keys(after.values).sort()).toEqual([...OBJECT_KEYS.filter((n) => n !== 'toString'), 'OTHER'].sort());
    expectOk(await api.put('sandbox/o/constructor', { value: 'again', ifVersion: 1 }), 200, SecretMetadata);
  });
});
