import { createHash } from 'node:crypto';
import { type RouteDef, routes } from '@coffer/contracts';
import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { fuzzedRoutes as entries, fuzzTarget, FUZZ_RUNS as RUNS } from '../support/fuzz.ts';
import type { TestApp } from '../support/test-app.ts';

/**
 * Property-based fuzzing of every route in the contracts' route table: random and boundary paths, methods,
 * headers, query strings and bodies. Whatever arrives, the server never answers 5xx, every non-2xx answer is the
 * error envelope, and a refused request changes nothing in the tenant's data. FUZZ_RUNS raises the case count.
 * Inputs at the edges of each route's schemas are fuzz-edges.test.ts's, a file of its own so that the two
 * properties can run on two workers at once.
 */

let t: TestApp;
let owner: pg.Client;
let tenantId: string;
let token: string;

beforeAll(async () => {
  ({ t, tenantId, token } = await fuzzTarget());
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
  // Named, so that PostgreSQL parses and plans it once: it runs after every case.
  const { rows } = await owner.query<{ s: string }>({
    name: 'fuzz-tenant-state',
    text: `select concat_ws('|',
       (select string_agg(concat_ws(',', id, current_version, deleted_at, description, tags::text, format::text, expires_at, rotation_interval_days), ';' order by id) from coffer.secrets where tenant_id = $1),
       (select string_agg(concat_ws(',', secret_id, version, destroyed_at, served_until), ';' order by secret_id, version) from coffer.secret_versions where tenant_id = $1),
       (select string_agg(concat_ws(',', id, revision), ';' order by id) from coffer.identities where tenant_id = $1),
       (select string_agg(version::text, ';' order by version) from coffer.tenant_keys where tenant_id = $1),
       (select string_agg(id::text, ';' order by id) from coffer.webhooks where tenant_id = $1),
       (select concat_ws(',', name, rate_limit_per_second) from coffer.tenants where id = $1)) as s`,
    values: [tenantId],
  });
  return createHash('sha256')
    .update(rows[0]?.s ?? '')
    .digest('hex');
}

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
