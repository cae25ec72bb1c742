import { generateKeyPairSync } from 'node:crypto';
import { type BuiltinFormat, SecretMetadata, SecretWithValue } from '@coffer/contracts';
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { createTenant, rootToken } from '../support/factories.ts';
import { expectError, expectOk, secretsApi } from '../support/secrets.ts';
import { ownerSuite, tenantCtx } from '../support/suite.ts';
import { createTestApp, type TestApp } from '../support/test-app.ts';

let t: TestApp;
let owner: pg.Client;
let root: string;

ownerSuite((s) => {
  ({ t, owner, root } = s);
});

async function secretCount(tenantId: string): Promise<number> {
  const { rows } = await owner.query<{ n: string }>('select count(*) as n from coffer.secrets where tenant_id = $1', [
    tenantId,
  ]);
  return Number(rows[0]?.n);
}

const rsaPem = generateKeyPairSync('rsa', { modulusLength: 1024 })
  .privateKey.export({ format: 'pem', type: 'pkcs8' })
  .toString();
const ecPem = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  .privateKey.export({ format: 'pem', type: 'sec1' })
  .toString();

/** One value each format accepts and one it refuses. */
const FORMAT_CASES: { format: BuiltinFormat; good: string; bad: string }[] = [
  { format: 'stripe-secret-key', good: 'sk_test_4eC39HqLyjWDarjtT1zdp7dc', bad: 'pk_test_4eC39HqLyjWDarjtT1zdp7dc' },
  { format: 'stripe-webhook-secret', good: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', bad: 'whsec_short' },
  { format: 'url', good: 'redis://:pw@cache.internal:6379/0', bad: 'mailto:ops@example.com' },
  { format: 'postgres-url', good: 'postgres://app:pw@db.internal:5432/app', bad: 'mysql://app:pw@db/app' },
  {
    format: 'pem-private-key',
    good: rsaPem,
    bad: '-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n',
  },
  { format: 'uuid', good: '0b5d8d0e-8c4e-4b4e-9e0a-4a8e2f6f3c11', bad: '0b5d8d0e-8c4e-4b4e-9e0a-4a8e2f6f3c1' },
  { format: 'base64', good: 'aGVsbG8gd29ybGQ=', bad: 'aGVsbG8gd29ybGQ' },
  { format: 'hex', good: 'deadBEEF01', bad: 'deadbee' },
  { format: 'json', good: '{"a":[1,2,{"b":null}]}', bad: '{"a":1' },
];

describe('built-in formats', () => {
  it.each(FORMAT_CASES)('$format: accepts a good value, refuses a bad one with 422 naming the rule', async (c) => {
    const { api } = await tenantCtx(t, root);
    const name = c.format.replace(/-/g, '_');
    const path = `shared/fmt/${name}`;
    const created = expectOk(await api.put(path, { value: c.good, format: c.format }), 201, SecretMetadata);
    expect(created.format).toBe(c.format);
    expect(expectOk(await api.get(path), 200, SecretWithValue).value).toBe(c.good);

    const res = await api.put(path, { value: c.bad });
    const err = expectError(res, 422, 'unprocessable');
    expect(err.details).toHaveLength(1);
    expect(err.details?.[0]?.path).toBe('body.value');
    expect(err.details?.[0]?.message.startsWith(`${c.format}:`)).toBe(true);
    expect(res.body).not.toContain(JSON.stringify(c.bad).slice(1, -1));
    // Nothing was written.
    const after = expectOk(await api.get(path), 200, SecretWithValue);
    expect(after).toMatchObject({ version: 1, value: c.good });

    // The bad value is refused at creation too.
    expectError(await api.put(`shared/fmt/NEW_${name}`, { value: c.bad, format: c.format }), 422, 'unprocessable');
    expectError(await api.get(`shared/fmt/NEW_${name}`), 404, 'not_found');
  });

  it('accepts other PEM private key kinds and refuses a public key', async () => {
    const { api } = await tenantCtx(t, root);
    expectOk(await api.put('shared/pem/EC', { value: ecPem, format: 'pem-private-key' }), 201, SecretMetadata);
    const publicPem = generateKeyPairSync('ed25519').publicKey.export({ format: 'pem', type: 'spki' }).toString();
    expectError(await api.put('shared/pem/PUB', { value: publicPem, format: 'pem-private-key' }), 422, 'unprocessable');
  });

  // Regression: two concatenated PEM blocks once passed (the lazy body spanned them).
  it('refuses two concatenated PEM blocks (the rule says one block)', async () => {
    const { api } = await tenantCtx(t, root);
    expectError(
      await api.put('shared/pem/TWO', { value: `${rsaPem}${rsaPem}`, format: 'pem-private-key' }),
      422,
      'unprocessable',
    );
  });
});

describe('custom formats', () => {
  it('checks a PostgreSQL pattern, a minimum and a maximum length (in characters)', async () => {
    const { api } = await tenantCtx(t, root);
    const format = { pattern: '^[a-zé]+-[0-9]{3}$', minLength: 6, maxLength: 8 };
    expectOk(await api.put('user/u/CODE', { value: 'abc-123', format }), 201, SecretMetadata);
    // 'éé-123' is 6 characters (8 bytes): lengths count characters, not bytes.
    expectOk(await api.put('user/u/CODE', { value: 'éé-123' }), 200, SecretMetadata);
    expectOk(await api.put('user/u/CODE', { value: 'éééé-123' }), 200, SecretMetadata);

    const pattern = expectError(await api.put('user/u/CODE', { value: 'ABC-123' }), 422, 'unprocessable');
    expect(pattern.details?.[0]?.message).toMatch(/^pattern:/);
    const short = expectError(await api.put('user/u/CODE', { value: 'a-123' }), 422, 'unprocessable');
    expect(short.details?.[0]?.message).toMatch(/^minLength:/);
    const long = expectError(await api.put('user/u/CODE', { value: 'abcdef-123' }), 422, 'unprocessable');
    expect(long.details?.[0]?.message).toMatch(/^maxLength:/);
    expect(expectOk(await api.get('user/u/CODE'), 200, SecretWithValue)).toMatchObject({
      version: 3,
      value: 'éééé-123',
    });
  });

  it('does not anchor a pattern for you: an unanchored pattern matches anywhere', async () => {
    const { api } = await tenantCtx(t, root);
    expectOk(await api.put('user/u/LOOSE', { value: 'xx42yy', format: { pattern: '[0-9]{2}' } }), 201, SecretMetadata);
    expectError(await api.put('user/u/LOOSE', { value: 'x4y' }), 422, 'unprocessable');
  });

  it('accepts lengths without a pattern', async () => {
    const { api } = await tenantCtx(t, root);
    expectOk(await api.put('user/u/LEN', { value: '12345678', format: { minLength: 8 } }), 201, SecretMetadata);
    expectError(await api.put('user/u/LEN', { value: '1234567' }), 422, 'unprocessable');
    expectOk(await api.put('user/u/MAX', { value: '', format: { maxLength: 2 } }), 201, SecretMetadata);
    expectError(await api.put('user/u/MAX', { value: 'abc' }), 422, 'unprocessable');
  });

  it('refuses an invalid regular expression and malformed custom formats with 400', async () => {
    const { tenant, api } = await tenantCtx(t, root);
    for (const pattern of ['(unclosed', '[z-a]', 'a{2,1}', '*']) {
      const err = expectError(
        await api.put('user/u/RE', { value: 'v', format: { pattern } }),
        400,
        'validation_failed',
      );
      expect(err.details).toEqual([
        { path: 'body.format.pattern', message: 'must be a valid PostgreSQL (POSIX ARE) regular expression' },
      ]);
    }
    expectError(await api.put('user/u/RE', { value: 'v', format: {} }), 400, 'validation_failed');
    expectError(
      await api.put('user/u/RE', { value: 'v', format: { minLength: 5, maxLength: 2 } }),
      400,
      'validation_failed',
    );
    expectError(await api.put('user/u/RE', { value: 'v', format: { pattern: '' } }), 400, 'validation_failed');
    expectError(await api.put('user/u/RE', { value: 'v', format: { regex: '.*' } }), 400, 'validation_failed');
    expectError(await api.put('user/u/RE', { value: 'v', format: 'credit-card' }), 400, 'validation_failed');
    expect(await secretCount(tenant.tenant.id)).toBe(0);
  });
});

describe('format changes', () => {
  it('validates a new value against a new format, and against the kept format when none is given', async () => {
    const { api } = await tenantCtx(t, root);
    const id = '0b5d8d0e-8c4e-4b4e-9e0a-4a8e2f6f3c11';
    expectOk(await api.put('sandbox/f/X', { value: id, format: 'uuid' }), 201, SecretMetadata);
    expectError(await api.put('sandbox/f/X', { value: 'abcd' }), 422, 'unprocessable');
    // The new format decides, not the old one.
    const hexed = expectOk(await api.put('sandbox/f/X', { value: 'abcd', format: 'hex' }), 200, SecretMetadata);
    expect(hexed).toMatchObject({ version: 2, format: 'hex' });
    expectError(await api.put('sandbox/f/X', { value: id }), 422, 'unprocessable');
    expectError(await api.put('sandbox/f/X', { value: 'zz', format: 'json' }), 422, 'unprocessable');
    expect(expectOk(await api.get('sandbox/f/X'), 200, SecretWithValue)).toMatchObject({ format: 'hex', version: 2 });
    // null removes the format: anything goes afterwards.
    expectOk(await api.put('sandbox/f/X', { value: 'free text', format: null }), 200, SecretMetadata);
    expect(expectOk(await api.put('sandbox/f/X', { value: 'more text' }), 200, SecretMetadata)).toMatchObject({
      version: 4,
      format: null,
    });
  });
});

describe('value size', () => {
  const LIMIT = 65_536;

  it('accepts exactly 64 KiB and refuses one byte more with 413, counting bytes not characters', async () => {
    const { api } = await tenantCtx(t, root);
    const ascii = 'a'.repeat(LIMIT);
    expectOk(await api.put('sandbox/big/ASCII', { value: ascii }), 201, SecretMetadata);
    expect(expectOk(await api.get('sandbox/big/ASCII'), 200, SecretWithValue).value).toBe(ascii);
    const over = expectError(await api.put('sandbox/big/ASCII', { value: `${ascii}a` }), 413, 'payload_too_large');
    expect(over.details?.[0]?.path).toBe('body.value');

    const twoByte = 'é'.repeat(LIMIT / 2); // 32 768 characters, 65 536 bytes
    expect(Buffer.byteLength(twoByte)).toBe(LIMIT);
    expectOk(await api.put('sandbox/big/ACCENTS', { value: twoByte }), 201, SecretMetadata);
    expect(expectOk(await api.get('sandbox/big/ACCENTS'), 200, SecretWithValue).value).toBe(twoByte);
    // 32 769 characters is far under 65 536 characters, but 65 538 bytes.
    expectError(await api.put('sandbox/big/ACCENTS', { value: `${twoByte}é` }), 413, 'payload_too_large');
    expectError(await api.put('sandbox/big/ACCENTS', { value: `${twoByte}a` }), 413, 'payload_too_large');

    const fourByte = '🔑'.repeat(LIMIT / 4);
    expect(Buffer.byteLength(fourByte)).toBe(LIMIT);
    expectOk(await api.put('sandbox/big/EMOJI', { value: fourByte }), 201, SecretMetadata);
    expect(expectOk(await api.get('sandbox/big/EMOJI'), 200, SecretWithValue).value).toBe(fourByte);
    expectError(await api.put('sandbox/big/NEW', { value: `${fourByte}x` }), 413, 'payload_too_large');
    expectError(await api.get('sandbox/big/NEW'), 404, 'not_found');

    // Nothing oversized was written.
    expect(expectOk(await api.get('sandbox/big/ASCII'), 200, SecretWithValue).version).toBe(1);
    expect(expectOk(await api.get('sandbox/big/ACCENTS'), 200, SecretWithValue).version).toBe(1);
  });

  it('applies the limit to every value of a bundle write', async () => {
    const { api } = await tenantCtx(t, root);
    const err = expectError(
      await api.writeBundle('sandbox', 'big', {
        set: { SMALL: { value: 'x' }, LARGE: { value: 'b'.repeat(LIMIT + 1) } },
      }),
      413,
      'payload_too_large',
    );
    expect(err.details?.[0]?.path).toBe('body.set.LARGE.value');
    expectError(await api.get('sandbox/big/SMALL'), 404, 'not_found');
  });

  it('follows COFFER_MAX_SECRET_BYTES', async () => {
    const small = await createTestApp({ COFFER_MAX_SECRET_BYTES: '10' });
    try {
      const tenant = await createTenant(small.app, await rootToken(small.app));
      const api = secretsApi(small.app, tenant.adminToken);
      const tenBytes = 'ééééé';
      expect(Buffer.byteLength(tenBytes)).toBe(10);
      expectOk(await api.put('sandbox/s/TEN', { value: tenBytes }), 201, SecretMetadata);
      expectError(await api.put('sandbox/s/ELEVEN', { value: `${tenBytes}a` }), 413, 'payload_too_large');
    } finally {
      await small.close();
    }
  });
});

describe('values that cannot be stored as text', () => {
  it('refuses a NUL character and an unpaired surrogate with 400', async () => {
    const { tenant, api } = await tenantCtx(t, root);
    const nul = expectError(await api.put('sandbox/v/NUL', { value: 'abc\u0000def' }), 400, 'validation_failed');
    expect(nul.details).toEqual([{ path: 'body.value', message: 'must not contain a NUL character' }]);
    // JSON can carry a lone surrogate escape; UTF-8 text cannot.
    const lone = await api.send('PUT', '/v1/secrets/sandbox/v/LONE', '{"value":"ab\\ud800cd"}', {
      'content-type': 'application/json',
    });
    expectError(lone, 400, 'validation_failed');
    expectError(await api.writeBundle('sandbox', 'v', { set: { NUL: { value: '\u0000' } } }), 400, 'validation_failed');
    expect(await secretCount(tenant.tenant.id)).toBe(0);
  });

  it('stores any other text unchanged: empty, whitespace, newlines, quotes, emoji', async () => {
    const { api } = await tenantCtx(t, root);
    const values = [
      '',
      ' ',
      '\n\r\t',
      'line1\nline2\n',
      '"quoted" \'single\' \\ backslash',
      'ключ 鍵 🔐',
      '\u00a0\u2028',
    ];
    for (const [i, value] of values.entries()) {
      expectOk(await api.put(`sandbox/v/V${i}`, { value }), 201, SecretMetadata);
      expect(expectOk(await api.get(`sandbox/v/V${i}`), 200, SecretWithValue).value).toBe(value);
    }
  });
});

describe('names and owners', () => {
  /** URLs that break the path rules; the server answers 400 or, where the route cannot match, 404. */
  const BAD_PATHS: { label: string; path: string; status: 400 | 404 }[] = [
    { label: 'path traversal in the owner', path: 'sandbox/..%2F../KEY', status: 400 },
    { label: 'path traversal in the name', path: 'sandbox/o/..%2F..%2Fetc', status: 400 },
    { label: 'a bare .. name', path: 'sandbox/o/..%2E', status: 400 },
    { label: 'an encoded slash inside a name', path: 'sandbox/o/a%2Fb', status: 400 },
    { label: 'an encoded slash inside an owner', path: 'sandbox/a%2Fb/KEY', status: 400 },
    { label: 'unicode letters in a name', path: `sandbox/o/${encodeURIComponent('nämé')}`, status: 400 },
    { label: 'unicode letters in an owner', path: `sandbox/${encodeURIComponent('ówner')}/KEY`, status: 400 },
    { label: 'an empty owner', path: 'sandbox//KEY', status: 400 },
    { label: 'an empty kind', path: '/o/KEY', status: 400 },
    { label: 'an empty name', path: 'sandbox/o/', status: 400 },
    { label: 'a 129-character name', path: `sandbox/o/${'N'.repeat(129)}`, status: 400 },
    { label: 'a 129-character owner', path: `sandbox/${'o'.repeat(129)}/KEY`, status: 400 },
    { label: 'a name with a leading digit', path: 'sandbox/o/1KEY', status: 400 },
    { label: 'a name with a leading dot', path: 'sandbox/o/.env', status: 400 },
    { label: 'a name with a leading dash', path: 'sandbox/o/-KEY', status: 400 },
    { label: 'an owner with a leading dot', path: 'sandbox/.o/KEY', status: 400 },
    { label: 'an owner with a leading dash', path: 'sandbox/-o/KEY', status: 400 },
    { label: 'a space in a name', path: 'sandbox/o/MY%20KEY', status: 400 },
    { label: 'an unknown kind', path: 'team/o/KEY', status: 400 },
    { label: 'a kind in capitals', path: 'SANDBOX/o/KEY', status: 400 },
    { label: 'a raw .. segment (the URL collapses it)', path: 'sandbox/../KEY', status: 404 },
  ];

  it.each(BAD_PATHS)('refuses $label and writes nothing', async ({ path, status }) => {
    const { tenant, api } = await tenantCtx(t, root);
    const url = `/v1/secrets/${path}`;
    const put = await api.send('PUT', url, { value: 'must-not-be-stored' });
    expectError(put, status, status === 400 ? 'validation_failed' : 'not_found');
    expect(put.body).not.toContain('must-not-be-stored');
    expectError(await api.send('GET', url), status, status === 400 ? 'validation_failed' : 'not_found');
    expect(await secretCount(tenant.tenant.id)).toBe(0);
  });

  // Regression: a NUL in the path once made the failure's own audit event fail (PostgreSQL text has no NUL),
  // turning a 400 into an unaudited 503.
  it('refuses a NUL in a name with 400, and audits the attempt', async () => {
    const { tenant, api } = await tenantCtx(t, root);
    const res = await api.send('GET', '/v1/secrets/sandbox/o/K%00EY');
    expectError(res, 400, 'validation_failed');
    const { rows } = await owner.query(
      'select action, outcome, error_code from coffer.audit_events where request_id = $1',
      [res.headers['x-request-id']],
    );
    expect(rows).toEqual([{ action: 'secrets.read', outcome: 'error', error_code: 'validation_failed' }]);
    expect(await secretCount(tenant.tenant.id)).toBe(0);
  });

  it('names the offending parameter in the 400', async () => {
    const { api } = await tenantCtx(t, root);
    const name = expectError(await api.put('sandbox/o/1KEY', { value: 'v' }), 400, 'validation_failed');
    expect(name.details?.map((d) => d.path)).toEqual(['params.name']);
    const ownerErr = expectError(await api.put('sandbox/.o/KEY', { value: 'v' }), 400, 'validation_failed');
    expect(ownerErr.details?.map((d) => d.path)).toEqual(['params.owner']);
    const kind = expectError(await api.put('team/o/KEY', { value: 'v' }), 400, 'validation_failed');
    expect(kind.details?.map((d) => d.path)).toEqual(['params.kind']);
  });

  it('refuses bad owners on the bundle routes too', async () => {
    const { tenant, api } = await tenantCtx(t, root);
    expectError(await api.bundle('sandbox', '..%2F..'), 400, 'validation_failed');
    expectError(await api.bundle('sandbox', '.hidden'), 400, 'validation_failed');
    expectError(await api.writeBundle('sandbox', '.hidden', { set: { A: { value: 'x' } } }), 400, 'validation_failed');
    expectError(await api.writeBundle('sandbox', 'o', { set: { nämé: { value: 'x' } } }), 400, 'validation_failed');
    expect(await secretCount(tenant.tenant.id)).toBe(0);
  });

  it('accepts the edges of the rules: 128 characters, dots, dashes and underscores', async () => {
    const { api } = await tenantCtx(t, root);
    const longName = `_${'a'.repeat(127)}`;
    const longOwner = `9${'o'.repeat(127)}`;
    for (const path of [`sandbox/${longOwner}/${longName}`, 'user/a.b-c_d/_x.y-z', 'shared/0/A', 'sandbox/o/a..b']) {
      expectOk(await api.put(path, { value: 'ok' }), 201, SecretMetadata);
      expect(expectOk(await api.get(path), 200, SecretWithValue).value).toBe('ok');
    }
  });
});
