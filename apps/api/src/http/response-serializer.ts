import { isDeepStrictEqual } from 'node:util';
import fastJson from 'fast-json-stringify';
import type { FastifySerializerCompiler } from 'fastify/types/schema.js';
import { ResponseSerializationError } from 'fastify-type-provider-zod';
import { z } from 'zod';

/** A route's response schema as JSON Schema: what the OpenAPI document publishes for it (the output side). */
export function responseJsonSchema(schema: z.ZodType): Record<string, unknown> {
  return z.toJSONSchema(schema, { io: 'output', unrepresentable: 'any' }) as Record<string, unknown>;
}

/**
 * The schema handed to fast-json-stringify: the contract's, without `additionalProperties: false`. The serializer
 * writes only listed properties whether or not it is there, but inside a union (a nullable object) it picks the
 * branch by validating the value, and with the keyword a value carrying an unlisted field matched no branch: the
 * response failed instead of the field being dropped, as zod drops it.
 */
function forSerializer(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(forSerializer);
  if (schema === null || typeof schema !== 'object') return schema;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(schema)) {
    if (k === 'additionalProperties' && v === false) continue;
    // Names of properties are data, not schemas: copy them as they are, walking only their schemas.
    out[k] =
      k === 'properties' || k === '$defs' || k === 'definitions'
        ? Object.fromEntries(Object.entries(v as object).map(([n, c]) => [n, forSerializer(c)]))
        : forSerializer(v);
  }
  return out;
}

/**
 * Where the compiled serializer could send a field the contract does not name: an object that lets any further
 * property through (`additionalProperties` true or `{}`, `patternProperties`), or a schema that says nothing of its
 * type (which fast-json-stringify writes with JSON.stringify, whatever it holds). Empty for every route's responses
 * (test/security/response-contract.test.ts).
 */
export function openSchemaPaths(schema: unknown, at = '$'): string[] {
  if (schema === null || typeof schema !== 'object') return [];
  const s = schema as Record<string, unknown>;
  const found: string[] = [];
  const ap = s.additionalProperties;
  if (ap === true || (typeof ap === 'object' && ap !== null && Object.keys(ap).length === 0)) {
    found.push(`${at}: takes any further property`);
  }
  if (s.patternProperties !== undefined) found.push(`${at}: patternProperties`);
  const typed = ['type', 'anyOf', 'oneOf', 'allOf', '$ref', 'const', 'enum'].some((k) => s[k] !== undefined);
  if (!typed) found.push(`${at}: no type`);
  for (const key of ['properties', '$defs', 'definitions']) {
    const children = s[key];
    if (children && typeof children === 'object') {
      for (const [name, child] of Object.entries(children)) found.push(...openSchemaPaths(child, `${at}.${name}`));
    }
  }
  for (const key of ['anyOf', 'oneOf', 'allOf', 'prefixItems']) {
    const list = s[key];
    if (!Array.isArray(list)) continue;
    for (const [i, child] of list.entries()) found.push(...openSchemaPaths(child, `${at}|${key}[${i}]`));
  }
  if (s.items !== undefined) found.push(...openSchemaPaths(s.items, `${at}[]`));
  if (ap && typeof ap === 'object') found.push(...openSchemaPaths(ap, `${at}{}`));
  return found;
}

/** The JSON Schema the compiled serializer of a response schema is built from. */
export function serializerJsonSchema(schema: z.ZodType): Record<string, unknown> {
  return forSerializer(responseJsonSchema(schema)) as Record<string, unknown>;
}

// Response schemas are module-level constants shared by every app a process builds (tests build many), and the error
// envelope serves every route's error statuses: each is compiled once.
const compiled = new WeakMap<z.ZodType, (data: unknown) => string>();

/** fast-json-stringify's serializer for a response schema: only the listed properties are written. */
export function compiledSerializer(schema: z.ZodType): (data: unknown) => string {
  let serialize = compiled.get(schema);
  if (!serialize) {
    serialize = fastJson(serializerJsonSchema(schema) as unknown as Parameters<typeof fastJson>[0]) as (
      data: unknown,
    ) => string;
    compiled.set(schema, serialize);
  }
  return serialize;
}

/**
 * Responses are written by a serializer compiled from the route's contract instead of being parsed by zod and then
 * stringified: a read's response took several times longer through zod. The compiled serializer writes only the
 * properties the contract lists (no other field can be sent) and refuses a response that lacks a required one.
 *
 * With `crossCheck` (every environment but production, so the whole test suite runs with it) each response is also
 * checked by the zod schema as before, and the two outputs must be the same JSON: a handler returning anything the
 * contract does not allow fails the tests exactly as it did when zod serialised everything.
 */
export function responseSerializerCompiler(o: { crossCheck: boolean }): FastifySerializerCompiler<z.ZodType> {
  return ({ schema, method, url }) => {
    const serialize = compiledSerializer(schema);
    if (!o.crossCheck) return serialize;
    return (data) => {
      const result = z.safeEncode(schema, data);
      if (!result.success) throw new ResponseSerializationError(method, url, { cause: result.error });
      const text = serialize(data);
      if (!isDeepStrictEqual(JSON.parse(text), JSON.parse(JSON.stringify(result.data)))) {
        throw new Error(`the compiled serializer of ${method} ${url} disagrees with the contract's zod schema`);
      }
      return text;
    };
  };
}
