import { generateKeyPairSync } from 'node:crypto';
import type { SecretFormat } from '@coffer/contracts';
import { parse as parseDotenv } from 'dotenv';
import { describe, expect, it } from 'vitest';
import { checkFormat as serverCheck } from '../../apps/api/src/secrets/formats.ts';
import { serialise } from '../../apps/cli/src/envfile.ts';
import { checkFormat as cliCheck } from '../../apps/cli/src/formats.ts';

const pem = generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();

const SAMPLES: Record<string, string[]> = {
  'stripe-secret-key': ['sk_test_abcdefghijklmnop1234', 'sk_live_short', 'pk_test_abcdefghijklmnop1234'],
  'stripe-webhook-secret': ['whsec_abcdefghijklmnop', 'whsec_short', 'wh_abcdefghijklmnopqrs'],
  url: [
    'https://example.com/x',
    'amqp://u:p@mq.internal:5672/vh',
    'redis://cache:6379',
    'mailto:a@b.c',
    'not a url',
    'http://',
  ],
  'postgres-url': ['postgres://u:p@h:5432/db', 'postgresql://h/db', 'mysql://h/db', ''],
  // Regression: two blocks in one value; the CLI's own copy of the PEM rule had not been tightened with the server's.
  'pem-private-key': [pem, '-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----', 'plain', pem + pem],
  uuid: ['123e4567-e89b-12d3-a456-426614174000', '123e4567e89b12d3a456426614174000'],
  base64: ['aGVsbG8=', 'aGVsbG8', ''],
  hex: ['deadbeef', 'abc', 'zz'],
  json: ['{"a":1}', '[1,2', 'null'],
};

describe('client-side format rules', () => {
  it('agree with the server on every built-in format', () => {
    for (const [format, values] of Object.entries(SAMPLES)) {
      for (const value of values) {
        const server = serverCheck(format as SecretFormat, value);
        const cli = cliCheck(format as SecretFormat, value);
        expect(cli.ok, `${format}: ${value.slice(0, 20)}`).toBe(server.ok);
        if (!cli.ok && !server.ok) expect(cli.rule).toBe(server.rule);
      }
    }
  });

  it('apply the length limits of a custom format like the server, and its pattern as a RegExp', () => {
    const f = { minLength: 3, maxLength: 5 };
    for (const v of ['ab', 'abc', 'abcdef', '✓✓✓']) expect(cliCheck(f, v).ok, v).toBe(serverCheck(f, v).ok);
    expect(cliCheck({ pattern: '^[a-z]+$' }, 'abc').ok).toBe(true);
    expect(cliCheck({ pattern: '^[a-z]+$' }, 'ABC').ok).toBe(false);
  });
});

describe('export formats', () => {
  it('refuse a value dotenv cannot hold exactly instead of writing a different one', () => {
    const impossible = `it's "quoted" with \`ticks\`, a # and a literal \\n\nand a second line`;
    expect(() => serialise({ HARD: impossible }, 'dotenv')).toThrow(
      /dotenv cannot hold the values of HARD exactly; use --format json/,
    );
    expect(() => serialise({ HARD: impossible }, 'dotenv')).not.toThrow(/quoted/);
    expect(JSON.parse(serialise({ HARD: impossible }, 'json'))).toEqual({ HARD: impossible });
  });

  it('pick a quoting that reads back exactly for each awkward value', () => {
    const values = {
      BACKSLASH: 'C:\\new\\table',
      BOTH_QUOTES: `it's "fine"`,
      CR: 'a\r\nb',
      LEADING_HASH: '#not-a-comment',
      DOLLAR: `$HOME \${PATH}`,
    };
    expect(parseDotenv(serialise(values, 'dotenv'))).toEqual(values);
  });

  it('refuse names that are not shell variables for --format shell', () => {
    expect(() => serialise({ 'my.key': 'x' }, 'shell')).toThrow(
      /my.key: a shell variable name is letters, digits and _ only/,
    );
  });
});
