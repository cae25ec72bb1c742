import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MasterKeyring } from './keyring.ts';
import {
  canonicalJson,
  type DeploymentMacFields,
  macKeyId,
  ROW_MAC_PURPOSE,
  RowMacs,
  type SecretMacFields,
  type VersionMacFields,
} from './row-macs.ts';

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
  class: null,
  strategy: null,
  ownerTeam: null,
  contact: null,
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

  it('a MAC that verified before still fails for any other input or MAC, and once its key leaves the keyring', () => {
    const k1 = key('k1');
    const keyring = new MasterKeyring([k1]);
    const macs = new RowMacs(keyring);
    const mac = macs.secret(secret);
    const other = macs.secret({ ...secret, name: 'OTHER' });
    for (let i = 0; i < 3; i++) expect(macs.secretVerifies(mac, secret)).toBe(true);
    // Each covered column, changed after the pair was remembered.
    expect(macs.secretVerifies(mac, { ...secret, currentVersion: 2 })).toBe(false);
    expect(macs.secretVerifies(mac, { ...secret, expiresAt: new Date(0) })).toBe(false);
    expect(macs.secretVerifies(mac, { ...secret, contact: 'x@example.com' })).toBe(false);
    // Another row's valid MAC, or the remembered MAC with a byte changed.
    expect(macs.secretVerifies(other, secret)).toBe(false);
    expect(macs.secretVerifies(`${mac.slice(0, -1)}${mac.endsWith('A') ? 'B' : 'A'}`, secret)).toBe(false);
    // The same fields as a version row's MAC input are another input.
    expect(
      macs.versionVerifies(mac, {
        tenantId: secret.tenantId,
        secretId: secret.id,
        version: 3,
        servedUntil: null,
        revokedAt: null,
        deploymentId: null,
      }),
    ).toBe(false);
    // A remembered pair does not outlive its key.
    const shrinking = {
      activeId: 'k1',
      has: (id: string) => id === 'k1' && present,
      deriveFor: keyring.deriveFor.bind(keyring),
    };
    let present = true;
    const held = new RowMacs(shrinking);
    const heldMac = held.secret(secret);
    expect(held.secretVerifies(heldMac, secret)).toBe(true);
    present = false;
    expect(held.secretVerifies(heldMac, secret)).toBe(false);
  });

  it('a remembered MAC matches only the same parts: same JSON types, the same nested arrays, nothing loosely equal', () => {
    const macs = new RowMacs(new MasterKeyring([key('k1')]));
    const strategy = { local: { action: 'inject' as const } };
    const withStrategy = { ...secret, strategy, class: 'user' as const };
    const mac = macs.secret(withStrategy);
    expect(macs.secretVerifies(mac, withStrategy)).toBe(true);
    // A number for a string's place, or the reverse, serialises differently: a fresh check, which fails.
    expect(macs.secretVerifies(mac, { ...withStrategy, currentVersion: '3' as unknown as number })).toBe(false);
    expect(macs.secretVerifies(mac, { ...withStrategy, name: 3 as unknown as string })).toBe(false);
    expect(macs.secretVerifies(mac, { ...withStrategy, deleted: 0 as unknown as boolean })).toBe(false);
    expect(macs.secretVerifies(mac, { ...withStrategy, strategy: { local: { action: 'strip' } } })).toBe(false);
    expect(macs.secretVerifies(mac, withStrategy)).toBe(true);
    // A deployment's parts nest arrays (its bundles): a change inside one misses too.
    const d: DeploymentMacFields = {
      tenantId: secret.tenantId,
      id: secret.id,
      name: 'desk-1',
      environment: 'staging',
      tier: 'local',
      bundles: ['shared/payments'],
      createdBy: null,
      revokedAt: null,
      revocation: null,
      items: [],
    };
    const dmac = macs.deployment(d);
    expect(macs.deploymentVerifies(dmac, d)).toBe(true);
    expect(macs.deploymentVerifies(dmac, { ...d, bundles: ['shared/other'] })).toBe(false);
    expect(macs.deploymentVerifies(dmac, { ...d, bundles: ['shared/payments', 'shared/other'] })).toBe(false);
    expect(macs.deploymentVerifies(dmac, d)).toBe(true);
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

describe('row MACs over the deployment columns', () => {
  const keyring = () => new MasterKeyring([{ id: 'k1', key: Buffer.alloc(32, 7) }]);
  /** The MACs as the API made them before it covered the deployment columns: a frozen copy of that formula. */
  const before = (parts: unknown[]) => {
    const k = keyring().deriveFor('k1', ROW_MAC_PURPOSE);
    return `k1.${createHmac('sha256', k).update(JSON.stringify(parts)).digest('base64url')}`;
  };
  const version: VersionMacFields = {
    tenantId: secret.tenantId,
    secretId: secret.id,
    version: 2,
    servedUntil: new Date('2026-01-01T00:00:00.000Z'),
    revokedAt: null,
    deploymentId: null,
  };

  it('a MAC made before they were covered still verifies while they are unset (null, their default)', () => {
    const macs = new RowMacs(keyring());
    const oldSecret = before([
      'secret',
      secret.tenantId,
      secret.id,
      'shared',
      'payments',
      'STRIPE_KEY',
      3,
      null,
      false,
    ]);
    expect(macs.secretVerifies(oldSecret, secret)).toBe(true);
    expect(macs.secret(secret)).toBe(oldSecret);
    const oldStaging = before([
      'secret',
      secret.tenantId,
      secret.id,
      'shared',
      'payments',
      'STRIPE_KEY',
      3,
      null,
      false,
      'staging',
    ]);
    expect(macs.secretVerifies(oldStaging, { ...secret, environment: 'staging' })).toBe(true);
    const oldVersion = before(['version', secret.tenantId, secret.id, 2, '2026-01-01T00:00:00.000Z']);
    expect(macs.versionVerifies(oldVersion, version)).toBe(true);
  });

  it('setting any of them fails the MAC made without it, and no value passes for another column’s', () => {
    const macs = new RowMacs(keyring());
    const mac = macs.secret(secret);
    const changed: Partial<SecretMacFields>[] = [
      { class: 'infrastructure' },
      { strategy: { local: { action: 'inject' } } },
      { ownerTeam: 'web' },
      { contact: 'web@example.com' },
    ];
    for (const c of changed) expect(macs.secretVerifies(mac, { ...secret, ...c }), JSON.stringify(c)).toBe(false);
    // One value in another column, or an environment slug equal to a class: each is its own MAC input.
    const asClass = macs.secret({ ...secret, class: 'user' });
    expect(macs.secretVerifies(asClass, { ...secret, ownerTeam: 'user' })).toBe(false);
    expect(macs.secretVerifies(asClass, { ...secret, environment: 'user' })).toBe(false);
    expect(macs.secretVerifies(macs.secret({ ...secret, ownerTeam: 'x' }), { ...secret, contact: 'x' })).toBe(false);
    // jsonb reorders a strategy's keys: the MAC does not depend on their order.
    const s1 = macs.secret({ ...secret, strategy: { local: { action: 'generate' }, cloud: { action: 'inject' } } });
    expect(
      macs.secretVerifies(s1, { ...secret, strategy: { cloud: { action: 'inject' }, local: { action: 'generate' } } }),
    ).toBe(true);
    const v = macs.version(version);
    expect(macs.versionVerifies(v, { ...version, revokedAt: new Date() })).toBe(false);
    expect(macs.versionVerifies(v, { ...version, deploymentId: secret.id })).toBe(false);
    const revoked = macs.version({ ...version, revokedAt: version.servedUntil });
    expect(macs.versionVerifies(revoked, version)).toBe(false);
  });

  it('a deployment’s MAC covers its plan item by item, whatever order the items come in', () => {
    const macs = new RowMacs(keyring());
    const item = {
      position: 0,
      secretId: secret.id,
      kind: 'shared',
      owner: 'payments',
      name: 'STRIPE_KEY',
      action: 'strip',
      reason: 'never shipped to this tier (infrastructure secret)',
      class: 'infrastructure',
      version: null,
      prompt: null,
    };
    const d: DeploymentMacFields = {
      tenantId: secret.tenantId,
      id: secret.id,
      name: 'desk-1',
      environment: 'staging',
      tier: 'desktop',
      bundles: ['shared/payments'],
      createdBy: null,
      revokedAt: null,
      revocation: null,
      items: [item, { ...item, position: 1, name: 'OTHER', action: 'inject', version: 3 }],
    };
    const mac = macs.deployment(d);
    expect(macs.deploymentVerifies(mac, { ...d, items: [...d.items].reverse() })).toBe(true);
    const edits: Partial<DeploymentMacFields>[] = [
      { environment: 'production' },
      { bundles: ['shared/payments', 'shared/other'] },
      { revokedAt: new Date() },
      { tier: 'cloud' },
      { items: [{ ...item, action: 'inject' }, ...d.items.slice(1)] },
      { items: [...d.items, { ...item, position: 2, name: 'ADDED', action: 'inject' }] },
    ];
    for (const e of edits) expect(macs.deploymentVerifies(mac, { ...d, ...e }), JSON.stringify(e)).toBe(false);
  });
});
