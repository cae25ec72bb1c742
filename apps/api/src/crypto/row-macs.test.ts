import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MasterKeyring } from './keyring.ts';
import { canonicalJson, macKeyId, RowMacs, type SecretMacFields } from './row-macs.ts';

const key = (id: string) => ({ id, key: randomBytes(32) });

const secret: SecretMacFields = {
  tenantId: '6f1c7e3a-0000-4000-8000-000000000001',
  id: '6f1c7e3a-0000-4000-8000-000000000002',
  environment: 'default',
  kind: 'shared',
  owner: 'payments',
  name: 'STRIPE_KEY',
  currentVersion: 3,
  expiresAt: null,
  deleted: false,
};

describe('row MACs', () => {
  it('a master key id with dots (the keyring allows them) still verifies: the id ends at the last dot', () => {
    const dotted = key('mk.2026.01');
    const macs = new RowMacs(new MasterKeyring([dotted]));
    const mac = macs.secret(secret);
    expect(macKeyId(mac)).toBe('mk.2026.01');
    expect(() => macs.checkSecret(mac, secret)).not.toThrow();
    expect(() => macs.checkSecret(mac, { ...secret, currentVersion: 2 })).toThrow('integrity check');
  });

  it('a MAC made under an older key verifies while that key is in the keyring, and fails once it has left', () => {
    const old = key('old');
    const next = key('new');
    const mac = new RowMacs(new MasterKeyring([old])).secret(secret);
    expect(new RowMacs(new MasterKeyring([next, old])).secretVerifies(mac, secret)).toBe(true);
    expect(new RowMacs(new MasterKeyring([next])).secretVerifies(mac, secret)).toBe(false);
  });

  it('a missing, malformed or truncated MAC fails', () => {
    const macs = new RowMacs(new MasterKeyring([key('k1')]));
    const mac = macs.secret(secret);
    for (const bad of [null, '', 'k1', '.abc', `k1.${'A'.repeat(10)}`, mac.slice(0, -2)]) {
      expect(macs.secretVerifies(bad, secret), String(bad)).toBe(false);
    }
    expect(macKeyId(null)).toBeNull();
    expect(macKeyId('nodot')).toBeNull();
  });

  it('canonical JSON does not depend on key order (jsonb reorders keys), and skips undefined members', () => {
    expect(canonicalJson({ b: 1, a: [{ y: 2, x: undefined, w: 'v' }] })).toBe('{"a":[{"w":"v","y":2}],"b":1}');
    expect(canonicalJson([{ issuer: 'gha', claims: { ref: 'r', repository: 'p' } }])).toBe(
      canonicalJson([{ claims: { repository: 'p', ref: 'r' }, issuer: 'gha' }]),
    );
  });
});
