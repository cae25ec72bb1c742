import { CofferClient, CofferError } from '@coffer/sdk';
import { describe, expect, it } from 'vitest';
import { createIdentity, createTenant } from '../support/factories.ts';
import { listeningSuite } from '../support/suite.ts';
import type { TestApp } from '../support/test-app.ts';

let t: TestApp;
let baseUrl: string;
listeningSuite((s) => {
  ({ t, url: baseUrl } = s);
});

describe('SDK check()', () => {
  it('returns typed verdicts for a list-only identity, required defaulting to true, and never a value', async () => {
    const tenant = await createTenant(t.app);
    const admin = new CofferClient({ baseUrl, ...tenant.admin });
    await admin.putSecret('sandbox/sdk-chk/URL', 'https://sdk-check.example/only-the-server-sees-this');
    const gate = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      policies: [{ path: 'sandbox/sdk-chk/*', capabilities: ['list'] }],
    });
    const client = new CofferClient({ baseUrl, token: gate.token });
    const answer = await client.check([
      { path: 'sandbox/sdk-chk/URL', format: 'url' },
      { path: 'sandbox/sdk-chk/ABSENT' },
      { path: 'sandbox/sdk-chk/OPTIONAL', required: false },
    ]);
    expect(answer.results.map((r) => [r.status, r.required, r.passed, r.version])).toEqual([
      ['ok', true, true, 1],
      ['missing', true, false, null],
      ['missing', false, true, null],
    ]);
    expect(answer.ok).toBe(false);
    expect(JSON.stringify(answer)).not.toContain('only-the-server-sees-this');
    // The same identity cannot read the value itself.
    await expect(client.getSecret('sandbox/sdk-chk/URL')).rejects.toSatisfy(
      (e) => e instanceof CofferError && e.code === 'forbidden',
    );
  });
});
