import { type RouteDef, routes } from '@coffer/contracts';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, createIdentity, createTenant, rootToken } from '../support/factories.ts';
import { fuzzedRoutes as entries, fuzzTarget, FUZZ_RUNS as RUNS } from '../support/fuzz.ts';
import { edgeArb } from '../support/schema-edges.ts';
import type { TestApp } from '../support/test-app.ts';

/**
 * Fuzzing every route of the contracts' route table with inputs at the edges of its own zod schemas, most of which
 * the schemas accept: whatever the schema lets through, the server never answers 5xx. Also the schema-valid inputs
 * that once did (docs/security-findings.md, finding 9). The random requests are fuzz.test.ts's.
 */

let t: TestApp;
let token: string;

beforeAll(async () => {
  ({ t, token } = await fuzzTarget());
});
afterAll(async () => {
  await t?.close();
});

/** The token a route's action needs, so an edge input reaches validation and the handler behind it. */
const tokenFor = (def: RouteDef) =>
  def.action === null
    ? undefined
    : def.action.startsWith('tenants.') || def.action.startsWith('system.')
      ? root
      : token;

let root: string;
let victimIdentityId: string;
let victimTenantId: string;

describe('inputs at the schemas’ edges', () => {
  beforeAll(async () => {
    root = await rootToken(t.app);
    // Ids the id-taking routes may be aimed at without disabling the fuzzing identity or throttling its tenant.
    victimIdentityId = (await createIdentity(t.app, token, { role: 'service', policies: [] })).identity.id;
    victimTenantId = (await createTenant(t.app, root)).tenant.id;
  });

  const send = (def: RouteDef, path: string, query: string, body?: unknown) => {
    const auth = tokenFor(def);
    return t.app.inject({
      method: def.method,
      url: query ? `${path}?${query}` : path,
      headers: auth ? bearer(auth) : {},
      ...(body !== undefined ? { payload: body as Record<string, unknown> } : {}),
    });
  };
  // Every byte, so that a lone surrogate (which encodeURIComponent refuses) still reaches the server.
  const percentEncoded = (v: string) =>
    [...Buffer.from(v, 'utf8')].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('');
  const seqCursor = (s: string) => Buffer.from(`{"s":${s}}`).toString('base64url');

  it('500 on valid input: ?version=2147483648, one past int4, is a 400 on read and on destroy', async () => {
    for (const url of [
      '/v1/secrets/sandbox/fuzz/KEY?version=2147483648',
      '/v1/secrets/sandbox/fuzz/KEY?version=99999999999',
    ]) {
      const res = await t.app.inject({ url, headers: bearer(token) });
      expect(res.statusCode, res.body).toBe(400);
    }
    const destroy = await t.app.inject({
      method: 'POST',
      url: '/v1/secrets/sandbox/fuzz/KEY/versions/2147483648/destroy',
      headers: bearer(token),
    });
    expect(destroy.statusCode, destroy.body).toBe(400);
    const put = await t.app.inject({
      method: 'PUT',
      url: '/v1/secrets/sandbox/fuzz/KEY',
      headers: bearer(token),
      payload: { value: 'v', ifVersion: 2147483648 },
    });
    expect(put.statusCode, put.body).toBe(400);
  });

  it('500 on valid input: audit and rotation-log cursors carrying s=1e400 (or -1, 0.5, 2^63) are a 400', async () => {
    for (const route of ['/v1/audit', '/v1/rotation/log']) {
      for (const s of ['1e400', '-1', '0.5', '9223372036854775808', '"x"']) {
        const res = await t.app.inject({ url: `${route}?cursor=${seqCursor(s)}`, headers: bearer(token) });
        expect(res.statusCode, `${route} s=${s}: ${res.body}`).toBe(400);
      }
    }
  });

  it('500 on valid input: from=0000-01-01T00:00:00Z, and a 9999-12-31 pushed into year 10000 by its offset, are a 400', async () => {
    for (const at of ['0000-01-01T00:00:00Z', '9999-12-31T23:59:59-23:59']) {
      for (const url of [
        '/v1/audit',
        '/v1/audit/export',
        '/v1/audit/verify',
        '/v1/audit/summary',
        '/v1/rotation/log',
      ]) {
        for (const q of ['from', 'to']) {
          const res = await t.app.inject({ url: `${url}?${q}=${encodeURIComponent(at)}`, headers: bearer(token) });
          expect(res.statusCode, `${url}?${q}=${at}: ${res.body.slice(0, 200)}`).toBe(400);
        }
      }
      const put = await t.app.inject({
        method: 'PUT',
        url: '/v1/secrets/sandbox/fuzz/EXPIRING',
        headers: bearer(token),
        payload: { value: 'v', expiresAt: at },
      });
      expect(put.statusCode, put.body).toBe(400);
    }
  });

  it('500 on valid input: a NUL in a tenant name, an identity name or a description is a 400', async () => {
    const cases = [
      send(routes.createTenant, '/v1/tenants', '', { slug: `nul-${Date.now()}`, name: 'a\u0000b' }),
      send(routes.createIdentity, '/v1/identities', '', { name: 'a\u0000b', role: 'auditor' }),
      send(routes.putSecret, '/v1/secrets/sandbox/fuzz/DESCRIBED', '', { value: 'v', description: 'a\u0000b' }),
    ];
    for (const res of await Promise.all(cases)) expect(res.statusCode, res.body).toBe(400);
  });

  it('no input the schemas accept answers 5xx: every route, with bodies, queries and parameters at their edges', {
    timeout: 600_000,
  }, async () => {
    const EDGE_RUNS = Math.max(200, Math.floor(RUNS / 5));
    const arbs = entries.map(([name, def]) => {
      const params = def.params
        ? fc.oneof(
            { weight: 3, arbitrary: edgeArb(def.params, true) },
            {
              weight: 1,
              arbitrary: fc
                .constantFrom(victimIdentityId, victimTenantId)
                .map((id) => ({ id, kind: 'sandbox', owner: 'fuzz', name: 'KEY', version: '1' })),
            },
          )
        : fc.constant({});
      return fc.record({
        name: fc.constant(name),
        params,
        query: def.query ? edgeArb(def.query, true) : fc.constant({}),
        body: def.body ? edgeArb(def.body) : fc.constant(undefined),
      });
    });
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(fc.oneof(...arbs), async (r) => {
        const def = (routes as Record<string, RouteDef>)[r.name] as RouteDef;
        const params = (r.params ?? {}) as Record<string, unknown>;
        const path = def.path.replace(/:([A-Za-z]+)/g, (_, p: string) => percentEncoded(String(params[p] ?? 'x')));
        const query = new URLSearchParams(
          Object.entries((r.query ?? {}) as Record<string, unknown>)
            .filter(([, v]) => v !== undefined)
            .map(([k, v]): [string, string] => [k, String(v)]),
        ).toString();
        const valid =
          (!def.params || def.params.safeParse(params).success) &&
          (!def.query || def.query.safeParse(Object.fromEntries(new URLSearchParams(query))).success) &&
          (!def.body || def.body.safeParse(r.body).success);
        if (valid) accepted++;
        const res = await send(def, path, query, r.body);
        expect(
          res.statusCode,
          `${def.method} ${path}?${query} ${JSON.stringify(r.body)?.slice(0, 300)} → ${res.body.slice(0, 300)}`,
        ).toBeLessThan(500);
        if (res.statusCode >= 400) {
          const body = res.json() as { error?: { code?: unknown } };
          expect(typeof body.error?.code).toBe('string');
        }
      }),
      { numRuns: EDGE_RUNS },
    );
    // Most of the point is inputs the schema accepts: enough of them must have been generated.
    expect(accepted).toBeGreaterThan(EDGE_RUNS / 10);
  });
});
