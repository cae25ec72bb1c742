import { createConfig, lintFromString } from '@redocly/openapi-core';
import { describe, expect, it } from 'vitest';
import { ownerSuite } from '../support/suite.ts';
import type { TestApp } from '../support/test-app.ts';

/**
 * A third-party linter reads /openapi.json as generators and portals will: Redocly's recommended rules, with every
 * warning counted as a problem too, must find nothing.
 */

let t: TestApp;
ownerSuite((s) => ({ t } = s));

describe("OpenAPI document under Redocly's recommended rules", () => {
  it('lints clean', async () => {
    const res = await t.app.inject({ url: '/openapi.json' });
    expect(res.statusCode).toBe(200);
    const problems = await lintFromString({
      source: res.body,
      absoluteRef: 'openapi.json',
      config: await createConfig({ extends: ['recommended'] }),
    });
    const found = problems.map((p) => `${p.severity} ${p.ruleId}: ${p.message} (${p.location[0]?.pointer ?? ''})`);
    expect(found).toEqual([]);
  });
});
