import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { SecretPath } from './secrets.queries.ts';
import { bindingLine, bindingLineLength, legacyBindingLine } from './secrets.queries.ts';

const tenantId = randomUUID();
const secretId = randomUUID();
const paths: SecretPath[] = [
  { environment: 'default', kind: 'sandbox', owner: 'sbx-1', name: 'DATABASE_URL' },
  { environment: 'staging', kind: 'shared', owner: 'payments', name: 'STRIPE_KEY' },
  { environment: 'prod-eu', kind: 'user', owner: 'u-7', name: 'A' },
];

describe('the binding line, matched in place', () => {
  it('finds exactly the line bindingLine writes, for every path, environment and version', () => {
    for (const path of paths) {
      for (const version of [1, 9, 10, 123456]) {
        const line = bindingLine(tenantId, secretId, version, path);
        expect(bindingLineLength(`${line}the value\nwith lines`, tenantId, secretId, version, path)).toBe(line.length);
        expect(bindingLineLength(line, tenantId, secretId, version, path)).toBe(line.length);
      }
    }
  });

  it('refuses any other line: each character changed or cut, another secret, tenant, version, path or environment', () => {
    const path = paths[1] as SecretPath;
    const line = bindingLine(tenantId, secretId, 3, path);
    for (let i = 0; i < line.length; i++) {
      const changed = `${line.slice(0, i)}${line[i] === 'x' ? 'y' : 'x'}${line.slice(i + 1)}value`;
      expect(bindingLineLength(changed, tenantId, secretId, 3, path), changed).toBe(-1);
      expect(bindingLineLength(line.slice(0, i), tenantId, secretId, 3, path)).toBe(-1);
    }
    const value = `${line}value`;
    expect(bindingLineLength(value, randomUUID(), secretId, 3, path)).toBe(-1);
    expect(bindingLineLength(value, tenantId, randomUUID(), 3, path)).toBe(-1);
    expect(bindingLineLength(value, tenantId, secretId, 33, path)).toBe(-1);
    expect(bindingLineLength(value, tenantId, secretId, 3, { ...path, environment: 'default' })).toBe(-1);
    expect(bindingLineLength(value, tenantId, secretId, 3, { ...path, name: 'STRIPE' })).toBe(-1);
    expect(bindingLineLength(value, tenantId, secretId, 3, { ...path, owner: 'pay' })).toBe(-1);
    expect(bindingLineLength(value, tenantId, secretId, 3, { ...path, kind: 'user' })).toBe(-1);
    // A name that is a prefix of the bound one, and the line of versions sealed before paths were bound.
    const longer = bindingLine(tenantId, secretId, 3, { ...path, environment: 'default', name: 'AB' });
    expect(bindingLineLength(longer, tenantId, secretId, 3, { ...path, environment: 'default', name: 'A' })).toBe(-1);
    expect(bindingLineLength(`${legacyBindingLine(tenantId, secretId, 3)}value`, tenantId, secretId, 3, path)).toBe(-1);
  });
});
