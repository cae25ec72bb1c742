import { createPrivateKey } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { isEnvelope, makeKeys } from './harness.ts';

describe('reliability harness helpers', () => {
  it('isEnvelope accepts only the error envelope with a code and a request id', () => {
    expect(isEnvelope({ error: { code: 'unavailable', message: 'x', requestId: 'r1' } })).toBe(true);
    expect(isEnvelope({ error: { code: 'unavailable' } })).toBe(false);
    expect(isEnvelope({ error: 'unavailable' })).toBe(false);
    expect(isEnvelope('Service Unavailable')).toBe(false);
    expect(isEnvelope(null)).toBe(false);
  });

  it('makeKeys gives each cluster keys of its own, in the formats the server reads', () => {
    const a = makeKeys();
    const b = makeKeys();
    expect(a.masterKeys).not.toBe(b.masterKeys);
    expect(a.rootSecret).not.toBe(b.rootSecret);
    const [id, key] = a.masterKeys.split(':');
    expect(id).toMatch(/^[a-z0-9]+$/);
    expect(Buffer.from(key ?? '', 'base64')).toHaveLength(32);
    expect(createPrivateKey(a.jwtPrivateKey).asymmetricKeyType).toBe('ed25519');
    expect(a.rootSecret.length).toBeGreaterThanOrEqual(24);
  });
});
