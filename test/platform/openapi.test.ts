import { readFileSync, writeFileSync } from 'node:fs';
import { type RouteDef, routes } from '@coffer/contracts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../support/test-app.ts';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

interface Operation {
  operationId?: string;
  security?: unknown[];
  requestBody?: unknown;
  responses?: Record<string, unknown>;
}
interface OpenApiDoc {
  openapi: string;
  info: { title: string; version: string };
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, unknown>; securitySchemes?: Record<string, unknown> };
}

async function document(): Promise<OpenApiDoc> {
  const res = await t.app.inject({ url: '/openapi.json' });
  expect(res.statusCode).toBe(200);
  expect(res.headers['content-type']).toMatch(/^application\/json/);
  return res.json() as OpenApiDoc;
}

const openApiPath = (p: string) => p.replace(/:([A-Za-z]+)/g, '{$1}');
const table = Object.entries(routes) as [string, RouteDef][];

describe('GET /openapi.json', () => {
  it('is OpenAPI 3.1.x', async () => {
    const doc = await document();
    expect(doc.openapi).toMatch(/^3\.1\.\d+$/);
    expect(doc.info.title).toBe('Coffer API');
  });

  it('documents every route of the contracts table, by path and method, and nothing else under /v1', async () => {
    const doc = await document();
    for (const [name, r] of table) {
      const op = doc.paths[openApiPath(r.path)]?.[r.method.toLowerCase()];
      expect(op, `${name}: ${r.method} ${r.path}`).toBeDefined();
      expect(op?.operationId).toBe(name);
      if (r.action) expect(op?.security, name).toEqual([{ bearerAuth: [] }]);
      else expect(op?.security, name).toEqual([]);
      if (r.body) expect(op?.requestBody, name).toBeDefined();
      for (const [status, schema] of Object.entries(r.success)) {
        if (schema !== null) expect(op?.responses?.[status], `${name} ${status}`).toBeDefined();
      }
    }
    const documented = Object.entries(doc.paths).flatMap(([p, ops]) =>
      Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`),
    );
    const expected = table.map(([, r]) => `${r.method} ${openApiPath(r.path)}`);
    expect(documented.sort()).toEqual(expected.sort());
  });

  // Regression test: this was a bug the first version of this suite found.
  it('documents bodiless success answers (DELETE /v1/identities/{id} -> 204)', async () => {
    const doc = await document();
    for (const [name, r] of table) {
      for (const status of Object.keys(r.success)) {
        const op = doc.paths[openApiPath(r.path)]?.[r.method.toLowerCase()];
        expect(op?.responses?.[status], `${name} ${status}`).toBeDefined();
      }
    }
  });

  it('has components for the error envelope, its codes and the resources', async () => {
    const doc = await document();
    for (const name of [
      'ErrorCode',
      'Error',
      'Tenant',
      'TenantPage',
      'CreateTenantRequest',
      'CreateTenantResponse',
      'Identity',
      'IdentityPage',
      'CreateIdentityRequest',
      'UpdateIdentityRequest',
      'Policy',
      'TokenRequest',
      'TokenResponse',
      'WhoAmI',
      'JwkSet',
    ]) {
      // A request body refers to the schema's input variant (`…Input`) where zod's input and output differ.
      expect(doc.components.schemas[name] ?? doc.components.schemas[`${name}Input`], name).toBeDefined();
    }
    expect(doc.components.securitySchemes?.bearerAuth).toMatchObject({ type: 'http', scheme: 'bearer' });
    const codes = (doc.components.schemas.ErrorCode as { enum?: string[] }).enum ?? [];
    expect(codes).toEqual(expect.arrayContaining(['validation_failed', 'unauthorized', 'forbidden', 'not_found']));
  });

  it('every $ref points at a component that exists', async () => {
    const doc = await document();
    const refs = [...JSON.stringify(doc).matchAll(/"\$ref":"#\/components\/schemas\/([^"]+)"/g)].map((m) => m[1]);
    expect(refs.length).toBeGreaterThan(10);
    for (const ref of new Set(refs)) expect(doc.components.schemas[ref as string], ref).toBeDefined();
  });

  it('documents the error envelope for the 4xx answers of an authenticated route', async () => {
    const doc = await document();
    const op = doc.paths['/v1/identities/{id}']?.patch;
    for (const status of ['400', '401', '403', '404', '409']) {
      expect(JSON.stringify(op?.responses?.[status]), status).toContain('#/components/schemas/Error"');
    }
  });
});

/**
 * The published document is the wire format: a refactor must leave it byte for byte as it was. The snapshot is
 * rewritten only on purpose (COFFER_UPDATE_OPENAPI_SNAPSHOT=1), in the same commit as the contract change it shows.
 */
describe('OpenAPI snapshot', () => {
  const snapshot = new URL('./openapi.snapshot.json', import.meta.url);
  it('equals the committed snapshot', async () => {
    const text = `${JSON.stringify(await document(), null, 2)}\n`;
    if (process.env.COFFER_UPDATE_OPENAPI_SNAPSHOT === '1') writeFileSync(snapshot, text);
    expect(text).toBe(readFileSync(snapshot, 'utf8'));
  });
});

describe('GET /docs', () => {
  it('serves the Swagger UI page', async () => {
    const res = await t.app.inject({ url: '/docs' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    expect(res.body).toContain('Swagger UI');
  });
});
