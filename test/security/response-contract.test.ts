import { ErrorEnvelope, type RouteDef, routes } from '@coffer/contracts';
import { isResponseSerializationError } from 'fastify-type-provider-zod';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  compiledSerializer,
  openSchemaPaths,
  responseSerializerCompiler,
  serializerJsonSchema,
} from '../../apps/api/src/http/response-serializer.ts';

/**
 * Responses are written by serializers compiled from the contracts (fast-json-stringify), not by zod. These tests hold
 * the guarantee zod gave for every route: no field outside the contract is ever sent.
 */

const responseSchemas: [string, z.ZodType][] = [['error envelope', ErrorEnvelope]];
for (const [name, def] of Object.entries(routes) as [string, RouteDef][]) {
  for (const [status, schema] of Object.entries(def.success))
    if (schema) responseSchemas.push([`${name} ${status}`, schema]);
}

const LEAK = 'leaked-field-value';

/** A value for a JSON schema with every optional property filled and an unlisted field on every object. */
function sample(schema: unknown, root: Record<string, unknown>, depth = 0): unknown {
  const s = schema as Record<string, unknown>;
  if (depth > 40) throw new Error('the contracts have no recursive response schema');
  if (typeof s.$ref === 'string') {
    const target = s.$ref
      .replace(/^#\//, '')
      .split('/')
      .reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], root);
    return sample(target, root, depth + 1);
  }
  if ('const' in s) return s.const;
  if (Array.isArray(s.enum)) return s.enum[0];
  for (const key of ['anyOf', 'oneOf'] as const) {
    const list = s[key] as Record<string, unknown>[] | undefined;
    if (list) return sample(list.find((b) => b.type !== 'null') ?? list[0], root, depth + 1);
  }
  if (Array.isArray(s.allOf)) return Object.assign({}, ...s.allOf.map((b) => sample(b, root, depth + 1)));
  const type = Array.isArray(s.type) ? s.type.find((t) => t !== 'null') : s.type;
  switch (type) {
    case 'object': {
      // A record's keys are its data (additionalProperties with a schema): an unlisted field is one of a fixed shape.
      const record = typeof s.additionalProperties === 'object' && s.additionalProperties !== null;
      const out: Record<string, unknown> = record ? {} : { unlistedField: LEAK };
      for (const [k, v] of Object.entries((s.properties ?? {}) as Record<string, unknown>)) {
        out[k] = sample(v, root, depth + 1);
      }
      if (record) {
        // A record keyed by an enum requires every key.
        for (const k of (s.required ?? ['somekey']) as string[])
          out[k] = sample(s.additionalProperties, root, depth + 1);
      }
      return out;
    }
    case 'array':
      return s.items ? [sample(s.items, root, depth + 1)] : [];
    case 'string':
      if (s.format === 'date-time') return '2026-12-01T00:00:00.000Z';
      if (s.format === 'uuid') return '00000000-0000-4000-8000-000000000000';
      return 'x'.repeat(Math.max(1, Number(s.minLength ?? 1)));
    case 'integer':
    case 'number':
      return Math.max(1, Number(s.minimum ?? 1));
    case 'boolean':
      return true;
    default:
      return null;
  }
}

describe('compiled response serializers', () => {
  it.each(responseSchemas)('%s: every object of the response is closed and every value typed', (_name, schema) => {
    expect(openSchemaPaths(serializerJsonSchema(schema))).toEqual([]);
  });

  it.each(responseSchemas)('%s: a field outside the contract is never written', (_name, schema) => {
    const json = serializerJsonSchema(schema);
    const value = sample(json, json);
    const text = compiledSerializer(schema)(value);
    expect(text).not.toContain(LEAK);
    expect(text).not.toContain('unlistedField');
    JSON.parse(text);
  });

  it('outside production, a response zod refuses fails as before, and one it accepts is written as zod writes it', () => {
    const schema = z.object({ state: z.enum(['a', 'b']), n: z.number().int(), nested: z.object({ x: z.string() }) });
    const checked = responseSerializerCompiler({ crossCheck: true })({ schema, method: 'GET', url: '/t' } as never);
    const fast = responseSerializerCompiler({ crossCheck: false })({ schema, method: 'GET', url: '/t' } as never);
    const extra = { state: 'a', n: 1, nested: { x: 'y', secret: LEAK }, other: LEAK };
    expect(checked(extra)).toBe('{"state":"a","n":1,"nested":{"x":"y"}}');
    expect(fast(extra)).toBe('{"state":"a","n":1,"nested":{"x":"y"}}');
    let thrown: unknown;
    try {
      checked({ state: 'c', n: 1, nested: { x: 'y' } });
    } catch (err) {
      thrown = err;
    }
    expect(isResponseSerializationError(thrown)).toBe(true);
    // Production: a response missing a required field is refused too (a 500), never sent incomplete.
    expect(() => fast({ state: 'a', n: 1 })).toThrow();
  });
});
