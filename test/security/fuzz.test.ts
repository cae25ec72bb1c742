import { createHash } from 'node:crypto';
import { type RouteDef, routes } from '@coffer/contracts';
import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { bearer, createIdentity, createTenant, rootToken } from '../support/factories.ts';
import { edgeArb } from '../support/schema-edges.ts';
import { createTestApp, type TestApp } from '../support/test-app.ts';

/**
 * Property-based fuzzing of every route in the contracts' route table: random and boundary paths, methods,
 * headers, query strings and bodies. Whatever arrives, the server never answers 5xx, every non-2xx answer is the
 * error envelope, and a refused request changes nothing in the tenant's data. FUZZ_RUNS raises the case count.
 */
const RUNS = Number(process.env.FUZZ_RUNS ?? 10_000);

let t: TestApp;
let owner: pg.Client;
let tenantId: string;
let token: string;

beforeAll(async () => {
  t = await createTestApp({
    COFFER_RATE_LIMIT_PER_SECOND: '1000000',
    COFFER_LOGIN_RATE_LIMIT_PER_MINUTE: '1000000',
    COFFER_LOGIN_MAX_FAILURES: '1000000',
    // Most fuzzed requests carry no or a bad token, all from one address: the per-source budget would refuse the
    // suite's own requests after a few hundred.
    COFFER_AUTH_FAILURES_PER_MINUTE: '1000000',
  });
  const tenant = await createTenant(t.app);
  tenantId = tenant.tenant.id;
  token = tenant.adminToken;
  await t.app.inject({
    method: 'PUT',
    url: '/v1/secrets/sandbox/fuzz/KEY',
    headers: bearer(token),
    payload: { value: 'v' },
  });
  owner = new pg.Client({ connectionString: inject('ownerDatabaseUrl') });
  await owner.connect();
});
afterAll(async () => {
  await owner?.end();
  await t?.close();
});

/**
 * A fingerprint of everything the tenant owns, except its audit log (which refused requests do write to) and what
 * the background re-encryption changes after a key rotation has answered (data-key versions and states).
 */
async function tenantState(): Promise<string> {
  const { rows } = await owner.query<{ s: string }>(
    `select concat_ws('|',
       (select string_agg(concat_ws(',', id, current_version, deleted_at, description, tags::text, format::text, expires_at, rotation_interval_days), ';' order by id) from coffer.secrets where tenant_id = $1),
       (select string_agg(concat_ws(',', secret_id, version, destroyed_at, served_until), ';' order by secret_id, version) from coffer.secret_versions where tenant_id = $1),
       (select string_agg(concat_ws(',', id, revision), ';' order by id) from coffer.identities where tenant_id = $1),
       (select string_agg(version::text, ';' order by version) from coffer.tenant_keys where tenant_id = $1),
       (select string_agg(id::text, ';' order by id) from coffer.webhooks where tenant_id = $1),
       (select concat_ws(',', name, rate_limit_per_second) from coffer.tenants where id = $1)) as s`,
    [tenantId],
  );
  return createHash('sha256')
    .update(rows[0]?.s ?? '')
    .digest('hex');
}

// A valid request to the audit follow stream is answered by a stream that lasts maxSeconds (an hour by default), so
// it is left out here; test/audit/audit-follow.test.ts and the security matrix drive it with short sessions.
const entries = (Object.entries(routes) as [string, RouteDef][]).filter(
  ([, def]) => !def.produces?.includes('text/event-stream'),
);
const weird = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.constantFrom(
    '',
    '..',
    '../..',
    '%2e%2e',
    '%2F',
    'a%00b',
    '\u0000',
    '__proto__',
    'constructor',
    ' ',
    '%',
    '%zz',
    'ä',
    '💥',
    'x'.repeat(600),
  ),
  fc.integer().map(String),
  fc.uuid(),
);
const validish = fc.constantFrom(
  'sandbox',
  'user',
  'shared',
  'fuzz',
  'KEY',
  '1',
  'previous',
  '00000000-0000-0000-0000-000000000000',
);
const segment = fc.oneof({ weight: 3, arbitrary: validish }, { weight: 2, arbitrary: weird });
const jsonish = fc.oneof(
  fc.jsonValue({ maxDepth: 4 }),
  fc.object({ maxDepth: 3 }),
  fc.record(
    { value: fc.oneof(fc.string(), fc.integer(), fc.constant(null)), ifVersion: fc.oneof(fc.integer(), fc.string()) },
    { requiredKeys: [] },
  ),
  fc.constant({ __proto__: { polluted: true } }),
  fc.constant(JSON.parse('{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}}}')),
  fc.constant(Array.from({ length: 200 }, () => ({ a: [{ b: [{ c: 1 }] }] }))),
);
const rawBody = fc.oneof(
  jsonish.map((v) => JSON.stringify(v) ?? 'null'),
  fc.string({ maxLength: 200 }),
  fc.constantFrom('{', '[', '{"value":', '\u0000', 'null', '"x"', '{"value":"\\ud800"}', '{"value":"a\\u0000b"}'),
  // Deeply nested JSON, as text (the value itself would be too deep to build and print).
  fc.constantFrom(`${'['.repeat(5000)}1${']'.repeat(5000)}`, `${'{"a":'.repeat(3000)}1${'}'.repeat(3000)}`),
);
const requestArb = fc.record({
  route: fc.constantFrom(...entries.map(([name]) => name)),
  params: fc.dictionary(fc.constantFrom('kind', 'owner', 'name', 'id', 'version'), segment),
  method: fc.oneof(
    { weight: 5, arbitrary: fc.constant<string | null>(null) },
    { weight: 1, arbitrary: fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS') },
  ),
  query: fc.dictionary(
    fc.oneof(
      fc.constantFrom(
        'limit',
        'cursor',
        'version',
        'kind',
        'owner',
        'prefix',
        'purge',
        'within',
        'from',
        'to',
        'format',
        'actor',
        'action',
        'path',
        'outcome',
      ),
      fc.string({ maxLength: 10 }),
    ),
    fc.oneof(weird, validish),
    { maxKeys: 4 },
  ),
  contentType: fc.constantFrom(
    'application/json',
    'application/json; charset=utf-8',
    'text/plain',
    'application/x-www-form-urlencoded',
    'garbage/',
    undefined,
  ),
  body: fc.option(rawBody, { nil: undefined }),
  auth: fc.constantFrom('good', 'good', 'good', 'none', 'garbage'),
  extraPath: fc.option(fc.constantFrom('/x', '/../secrets', '?', '/%00', '//'), { nil: undefined }),
});

describe(`fuzzing every route (${entries.length} routes, ${RUNS} cases)`, () => {
  it('never answers 5xx, always answers errors in the envelope, and a refused request changes nothing', {
    timeout: 600_000,
  }, async () => {
    let state = await tenantState();
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(requestArb, async (r) => {
        const def = (routes as Record<string, RouteDef>)[r.route] as RouteDef;
        const path =
          def.path.replace(/:([A-Za-z]+)/g, (_, name: string) => encodeURIComponent(r.params[name] ?? 'x')) +
          (r.extraPath ?? '');
        const qs = new URLSearchParams(Object.entries(r.query)).toString();
        const headers: Record<string, string> = {};
        if (r.auth === 'good') headers.authorization = `Bearer ${token}`;
        if (r.auth === 'garbage') headers.authorization = 'Bearer x.y.z';
        if (r.contentType && r.body !== undefined) headers['content-type'] = r.contentType;
        const res = await t.app.inject({
          method: (r.method ?? def.method) as 'GET',
          url: qs ? `${path}?${qs}` : path,
          headers,
          ...(r.body !== undefined && (r.method ?? def.method) !== 'GET' && (r.method ?? def.method) !== 'HEAD'
            ? { payload: r.body }
            : {}),
        });
        statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
        expect(res.statusCode, `${r.method ?? def.method} ${path} → ${res.body.slice(0, 300)}`).toBeLessThan(500);
        const ok = res.statusCode >= 200 && res.statusCode < 300;
        if (!ok && res.statusCode !== 304 && (r.method ?? def.method) !== 'HEAD') {
          const body = res.json() as { error?: { code?: unknown; requestId?: unknown } };
          expect(typeof body.error?.code, res.body.slice(0, 300)).toBe('string');
          expect(typeof body.error?.requestId).toBe('string');
        }
        const after = await tenantState();
        if (!ok)
          expect(
            after,
            `${r.method ?? def.method} ${path} was refused (${res.statusCode}) but changed the tenant`,
          ).toBe(state);
        state = after;
      }),
      { numRuns: RUNS },
    );
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.prototype).not.toHaveProperty('polluted');
    // Enough of the cases reached the handlers (not just validation) to mean something.
    const succeeded = [...statuses].filter(([s]) => s < 300).reduce((a, [, n]) => a + n, 0);
    expect(succeeded).toBeGreaterThan(RUNS / 50);
  });
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
