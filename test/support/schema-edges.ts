import { EARLIEST_TIMESTAMP, INT4_MAX, LATEST_TIMESTAMP } from '@coffer/contracts';
import fc from 'fast-check';
import type { z } from 'zod';

/**
 * Values at the edges of a zod schema, read from the schema itself: integers at min, max, one past each and at
 * the int4 and safe-integer limits; strings empty, at their maximum length, one past it, matching their pattern,
 * and in awkward Unicode; timestamps at and past the contracts' bounds, with extreme offsets; arrays empty and at
 * their maximum size; record keys that are also object keys. Most values are ones the schema accepts, which is
 * the point: an input the schema accepts must never make the server fail.
 *
 * `asText` renders scalars as strings, for query strings and path parameters.
 */

type Def = Record<string, unknown> & { type: string; checks?: { _zod: { def: Record<string, unknown> } }[] };

const defOf = (s: z.ZodType): Def => s._zod.def as unknown as Def;
const checksOf = (d: Def) => (d.checks ?? []).map((c) => c._zod.def);

function bounds(d: Def): { min?: number; max?: number; pattern?: RegExp; minLen?: number; maxLen?: number } {
  const out: { min?: number; max?: number; pattern?: RegExp; minLen?: number; maxLen?: number } = {};
  for (const c of checksOf(d)) {
    if (c.check === 'greater_than') out.min = Number(c.value) + (c.inclusive ? 0 : 1);
    if (c.check === 'less_than') out.max = Number(c.value) - (c.inclusive ? 0 : 1);
    if (c.check === 'min_length') out.minLen = Number(c.minimum);
    if (c.check === 'max_length') out.maxLen = Number(c.maximum);
    if (c.check === 'length_equals') out.minLen = out.maxLen = Number(c.length);
    if (c.check === 'string_format' && c.format === 'regex' && c.pattern instanceof RegExp) out.pattern = c.pattern;
  }
  return out;
}

const AWKWARD = [
  '',
  ' ',
  '\u0000',
  'a\u0000b',
  '\ud800',
  'a\udc00',
  'ä',
  '💥',
  '\u202e',
  '\ufeff',
  '__proto__',
  'constructor',
  'toString',
  '%00',
  '../..',
];

const SPECIAL_KEYS = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', 'prototype'];

const t = (ms: number) => new Date(ms).toISOString();
const TIMESTAMPS = [
  '0000-01-01T00:00:00Z',
  '0001-01-01T00:00:00Z',
  '1969-12-31T23:59:59.999Z',
  EARLIEST_TIMESTAMP,
  '1970-01-01T00:00:00+14:00',
  '1970-01-01T00:00:00-00:01',
  LATEST_TIMESTAMP,
  '9999-12-31T23:59:59Z',
  '9999-12-31T23:59:59-23:59',
  '9999-12-31T23:59:59+23:59',
  '2026-06-01T12:00:00.123456789Z',
  '2026-06-01T12:00:00z',
  '2038-01-19T03:14:08Z',
];

function integerEdges(min: number, max: number): number[] {
  const raw = [
    min,
    min - 1,
    min + 1,
    max,
    max + 1,
    max - 1,
    0,
    -1,
    1,
    INT4_MAX,
    INT4_MAX + 1,
    -INT4_MAX - 1,
    -INT4_MAX - 2,
    Number.MAX_SAFE_INTEGER,
    Number.MIN_SAFE_INTEGER,
    2 ** 63,
  ];
  return [...new Set(raw.filter((n) => Number.isFinite(n)))];
}

function stringArb(d: Def): fc.Arbitrary<unknown> {
  const format = typeof d.format === 'string' ? d.format : undefined;
  if (format === 'datetime') {
    return fc.oneof(
      { weight: 3, arbitrary: fc.constantFrom(...TIMESTAMPS) },
      { weight: 2, arbitrary: fc.integer({ min: 0, max: Date.parse(LATEST_TIMESTAMP) }).map(t) },
    );
  }
  if (format === 'uuid' || format === 'guid') {
    return fc.oneof(
      fc.uuid(),
      fc.constantFrom('00000000-0000-0000-0000-000000000000', 'ffffffff-ffff-ffff-ffff-ffffffffffff'),
    );
  }
  if (format === 'url') {
    return fc.oneof(
      fc.webUrl({ validSchemes: ['https', 'http'] }),
      fc.constantFrom(
        'https://127.0.0.1/',
        'http://[::1]/',
        'https://169.254.169.254/latest',
        `https://x/${'a'.repeat(2040)}`,
      ),
    );
  }
  const b = bounds(d);
  const maxLen = b.maxLen ?? 200;
  const minLen = b.minLen ?? 0;
  const fits = (s: string) => s.length >= minLen && s.length <= maxLen;
  const options: fc.Arbitrary<unknown>[] = [
    fc.constantFrom(...AWKWARD),
    fc.constantFrom(
      'x'.repeat(maxLen),
      'x'.repeat(maxLen + 1),
      'x'.repeat(Math.max(minLen - 1, 0)),
      'ä'.repeat(maxLen),
    ),
    fc.string({ unit: 'grapheme', minLength: minLen, maxLength: Math.min(maxLen, 40) }),
  ];
  if (b.pattern) {
    const pattern = b.pattern;
    options.push(fc.stringMatching(pattern).filter(fits));
    options.push(fc.stringMatching(pattern).filter(fits));
  } else {
    options.push(fc.string({ minLength: minLen, maxLength: Math.min(maxLen, 64) }));
  }
  return fc.oneof(...options);
}

export function edgeArb(schema: z.ZodType, asText = false): fc.Arbitrary<unknown> {
  const d = defOf(schema);
  const text = (a: fc.Arbitrary<unknown>) => (asText ? a.map((v) => (v === undefined ? v : String(v))) : a);
  switch (d.type) {
    case 'string':
      return stringArb(d);
    case 'number': {
      const b = bounds(d);
      const min = b.min ?? -(2 ** 53);
      const max = b.max ?? 2 ** 53;
      const integer = checksOf(d).some((c) => c.check === 'number_format' && String(c.format).includes('int'));
      const inRange = integer
        ? fc.integer({ min: Math.max(min, Number.MIN_SAFE_INTEGER), max: Math.min(max, Number.MAX_SAFE_INTEGER) })
        : fc.double({ min, max, noNaN: true });
      const edges = fc.constantFrom(...integerEdges(min, max), 0.5, -0.0);
      const numbers = fc.oneof({ weight: 3, arbitrary: edges }, { weight: 2, arbitrary: inRange });
      return asText
        ? fc.oneof(
            { weight: 5, arbitrary: numbers.map(String) },
            {
              weight: 1,
              arbitrary: fc.constantFrom('1e400', '-1e400', '1e3', '0x10', ' 1', '1.0', 'NaN', 'Infinity', ''),
            },
          )
        : numbers;
    }
    case 'boolean':
      return text(fc.boolean());
    case 'enum':
      return fc.constantFrom(...Object.values(d.entries as Record<string, string>));
    case 'literal':
      return fc.constantFrom(...(d.values as unknown[]));
    case 'null':
      return fc.constant(null);
    case 'optional':
    case 'default':
    case 'prefault':
    case 'readonly':
    case 'catch':
    case 'nonoptional':
      return edgeArb(d.innerType as z.ZodType, asText);
    case 'nullable':
      return fc.oneof(
        { weight: 1, arbitrary: fc.constant(null) },
        { weight: 4, arbitrary: edgeArb(d.innerType as z.ZodType, asText) },
      );
    case 'pipe':
      return edgeArb(d.in as z.ZodType, asText);
    case 'union':
      return fc.oneof(...(d.options as z.ZodType[]).map((o) => edgeArb(o, asText)));
    case 'array': {
      const b = bounds(d);
      const element = edgeArb(d.element as z.ZodType, asText);
      const maxLength = b.maxLen ?? 10;
      return fc.oneof(
        { weight: 4, arbitrary: fc.array(element, { minLength: b.minLen ?? 0, maxLength: Math.min(maxLength, 4) }) },
        { weight: 1, arbitrary: fc.array(element, { minLength: maxLength, maxLength: maxLength + 1 }) },
        { weight: 1, arbitrary: fc.constant([]) },
      );
    }
    case 'record': {
      const key = fc.oneof(
        { weight: 3, arbitrary: edgeArb(d.keyType as z.ZodType, true).map(String) },
        { weight: 1, arbitrary: fc.constantFrom(...SPECIAL_KEYS) },
      );
      return fc.array(fc.tuple(key, edgeArb(d.valueType as z.ZodType, asText)), { maxLength: 4 }).map((pairs) => {
        const out: Record<string, unknown> = Object.create(null);
        for (const [k, v] of pairs) out[k] = v;
        return out;
      });
    }
    case 'object': {
      const shape = d.shape as Record<string, z.ZodType>;
      const entries = Object.entries(shape).map(([k, v]) => [k, edgeArb(v, asText)] as const);
      return fc.tuple(...entries.map(([, a]) => fc.option(a, { nil: undefined, freq: 3 }))).map((values) => {
        const out: Record<string, unknown> = {};
        values.forEach((v, i) => {
          const k = entries[i]?.[0];
          if (k !== undefined && v !== undefined) out[k] = v;
        });
        return out;
      });
    }
    default:
      return fc.constant(undefined);
  }
}
