import { randomUUID } from 'node:crypto';
import { type RouteDef, routes, SecretMetadata, SecretWithValue } from '@coffer/contracts';
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { bearer, createTenant, type TestTenant } from '../support/factories.ts';
import { expectError, expectOk, secretsApi } from '../support/secrets.ts';
import { ownerSuite } from '../support/suite.ts';
import type { TestApp } from '../support/test-app.ts';

/**
 * A misspelt field must be refused, never dropped: `ifversion` for `ifVersion` silently turned compare-and-set
 * off. Every request object (bodies and queries, at every level) is strict, and the 400 names the field.
 */

let t: TestApp;
let owner: pg.Client;
let root: string;
ownerSuite((s) => {
  ({ t, owner, root } = s);
});

const entries = Object.entries(routes) as [string, RouteDef][];

/** Object schemas inside `schema` that would drop an unknown key, by where they sit. */
function lenientObjects(schema: z.ZodType, at: string, seen = new Set<z.ZodType>()): string[] {
  if (seen.has(schema)) return [];
  seen.add(schema);
  const def = schema._zod.def as unknown as Record<string, unknown> & { type: string };
  const walk = (s: unknown, where: string) => lenientObjects(s as z.ZodType, where, seen);
  switch (def.type) {
    case 'object': {
      const catchall = def.catchall as z.ZodType | undefined;
      const own = catchall?._zod.def.type === 'never' ? [] : [at];
      const shape = def.shape as Record<string, z.ZodType>;
      return [...own, ...Object.entries(shape).flatMap(([k, v]) => walk(v, `${at}.${k}`))];
    }
    case 'optional':
    case 'nullable':
    case 'default':
    case 'prefault':
    case 'readonly':
    case 'catch':
    case 'nonoptional':
      return walk(def.innerType, at);
    case 'array':
      return walk(def.element, `${at}[]`);
    case 'record':
      return walk(def.valueType, `${at}{}`);
    case 'union':
      return (def.options as z.ZodType[]).flatMap((o) => walk(o, at));
    case 'intersection':
      return [...walk(def.left, at), ...walk(def.right, at)];
    case 'pipe':
      return [...walk(def.in, at), ...walk(def.out, at)];
    case 'lazy':
      return walk((def.getter as () => z.ZodType)(), at);
    default:
      return [];
  }
}

/** A token that may attempt the route's action, so the request reaches validation. */
function tokenFor(def: RouteDef, tenant: TestTenant): string | undefined {
  if (def.action === null) return undefined;
  if (def.action.startsWith('tenants.') || def.action.startsWith('system.') || def.action.startsWith('platform.')) {
    return root;
  }
  return tenant.adminToken;
}

// `name` is a secret's name on secret routes and a dynamic backend's (lowercase only) on theirs: one value fits both.
const PARAMS: Record<string, string> = { kind: 'sandbox', owner: 'own', name: 'name', id: randomUUID(), version: '1' };
/** Bodies valid for the routes that take a query too: the body is validated first, so it must pass to reach the query. */
const VALID_BODY: Record<string, unknown> = {
  putSecret: { value: 'v' },
  patchSecret: { description: 'd' },
  rotateSecret: { value: 'v' },
  writeBundle: { set: { NAME: { value: 'v' } } },
  checkSecrets: { secrets: [{ path: 'sandbox/own/NAME' }] },
};
const urlOf = (def: RouteDef) => def.path.replace(/:([A-Za-z]+)/g, (_, p: string) => PARAMS[p] ?? 'x');

describe('unknown fields are refused, never dropped', () => {
  it('unknown field: every request body and query schema in the route table is strict at every object level', () => {
    const lenient = entries.flatMap(([name, def]) => [
      ...(def.body ? lenientObjects(def.body, `${name}.body`) : []),
      ...(def.query ? lenientObjects(def.query, `${name}.query`) : []),
    ]);
    expect(lenient).toEqual([]);
  });

  it('unknown field: every route with a body answers a body with an unknown field with 400 naming it', async () => {
    const tenant = await createTenant(t.app, root);
    const withBody = entries.filter(([, def]) => def.body);
    expect(withBody.length).toBeGreaterThan(5);
    for (const [name, def] of withBody) {
      const token = tokenFor(def, tenant);
      const res = await t.app.inject({
        method: def.method,
        url: urlOf(def),
        headers: token ? bearer(token) : {},
        payload: { zzUnknownField: 1 },
      });
      const err = expectError(res, 400, 'validation_failed');
      expect(err.details, name).toContainEqual({ path: 'body.zzUnknownField', message: 'unknown field' });
      expect(err.message, name).toContain('body.zzUnknownField');
    }
  });

  it('unknown field: every route with a query answers an unknown query parameter with 400 naming it', async () => {
    const tenant = await createTenant(t.app, root);
    // Fastify validates the body before the query, so a route whose body refuses an empty one (putSecret,
    // writeBundle, …) answers about the body here; the walk above holds those queries strict.
    for (const [name, def] of entries.filter(([, d]) => d.query && (!d.body || d.body.safeParse(null).success))) {
      const token = tokenFor(def, tenant);
      if (def.body && !def.body.safeParse(undefined).success) expect(Object.keys(VALID_BODY), name).toContain(name);
      const res = await t.app.inject({
        method: def.method,
        url: `${urlOf(def)}?zzUnknownParam=1`,
        headers: token ? bearer(token) : {},
        ...(VALID_BODY[name] !== undefined ? { payload: VALID_BODY[name] as Record<string, unknown> } : {}),
      });
      const err = expectError(res, 400, 'validation_failed');
      expect(err.details, name).toContainEqual({ path: 'querystring.zzUnknownParam', message: 'unknown field' });
    }
  });

  it('unknown field: PUT {"value":"b","ifversion":0} on an existing secret is refused naming ifversion, and writes no version', async () => {
    const tenant = await createTenant(t.app, root);
    const api = secretsApi(t.app, tenant.adminToken);
    expectOk(await api.put('shared/cas/KEY', { value: 'a' }), 201, SecretMetadata);
    const err = expectError(await api.put('shared/cas/KEY', { value: 'b', ifversion: 0 }), 400, 'validation_failed');
    expect(err.message).toContain('ifversion');
    expect(err.details).toContainEqual({ path: 'body.ifversion', message: 'unknown field' });
    const current = expectOk(await api.get('shared/cas/KEY'), 200, SecretWithValue);
    expect({ version: current.version, value: current.value }).toEqual({ version: 1, value: 'a' });
    const { rows } = await owner.query<{ n: string }>(
      'select count(*) as n from coffer.secret_versions where tenant_id = $1',
      [tenant.tenant.id],
    );
    expect(Number(rows[0]?.n)).toBe(1);
  });

  it('unknown field: PATCH {"rotaton": …} names rotaton instead of "must change at least one field"', async () => {
    const tenant = await createTenant(t.app, root);
    const api = secretsApi(t.app, tenant.adminToken);
    expectOk(await api.put('shared/patch/KEY', { value: 'a' }), 201, SecretMetadata);
    const res = await api.send('PATCH', '/v1/secrets/shared/patch/KEY', { rotaton: { intervalDays: 30 } });
    const err = expectError(res, 400, 'validation_failed');
    expect(err.details).toContainEqual({ path: 'body.rotaton', message: 'unknown field' });
    expect(err.message).toContain('rotaton');
  });

  it('unknown field: a typo one level down (rotation.intervalDay, a bundle entry, a policy) is named at its path', async () => {
    const tenant = await createTenant(t.app, root);
    const api = secretsApi(t.app, tenant.adminToken);
    const put = await api.put('shared/deep/KEY', { value: 'a', rotation: { intervalDay: 30, intervalDays: 30 } });
    expect(expectError(put, 400, 'validation_failed').details).toContainEqual({
      path: 'body.rotation.intervalDay',
      message: 'unknown field',
    });
    const bundle = await api.writeBundle('shared', 'deep', { set: { KEY: { value: 'a', ifversion: 0 } } });
    expect(expectError(bundle, 400, 'validation_failed').details).toContainEqual({
      path: 'body.set.KEY.ifversion',
      message: 'unknown field',
    });
    const identity = await t.app.inject({
      method: 'POST',
      url: '/v1/identities',
      headers: bearer(tenant.adminToken),
      payload: { name: 'svc', role: 'service', policies: [{ path: 'shared/*', capabilities: ['read'], env: 'x' }] },
    });
    expect(expectError(identity, 400, 'validation_failed').details).toContainEqual({
      path: 'body.policies.0.env',
      message: 'unknown field',
    });
  });
});
