import { readFileSync } from 'node:fs';
import path from 'node:path';
import { API_PREFIX, routes, WIRE_FORMAT_VERSION } from '@coffer/contracts';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../support/build.ts';

/** Routes outside the versioned API: probes and key discovery, whose paths other software fixes. */
const UNVERSIONED = new Set(['/healthz', '/readyz', '/.well-known/jwks.json', '/metrics', '/openapi.json']);

describe('the wire format version', () => {
  it('is major.minor, and every API route carries its major as the path prefix', () => {
    expect(WIRE_FORMAT_VERSION).toMatch(/^\d+\.\d+$/);
    expect(API_PREFIX).toBe(`/v${WIRE_FORMAT_VERSION.split('.')[0]}`);
    const stray = Object.entries(routes)
      .filter(([, r]) => !UNVERSIONED.has(r.path) && !r.path.startsWith(`${API_PREFIX}/`))
      .map(([name, r]) => `${name} ${r.path}`);
    expect(stray).toEqual([]);
  });

  it('is the one the contracts changelog names for the current version', () => {
    const dir = path.join(repoRoot, 'packages/contracts');
    const { version } = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { version: string };
    const changelog = readFileSync(path.join(dir, 'CHANGELOG.md'), 'utf8');
    expect(changelog).toContain(`## ${version} — wire format ${WIRE_FORMAT_VERSION}`);
  });
});
