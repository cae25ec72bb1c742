import { CofferClient, CofferError, intakeTokenOf } from '@coffer/sdk';
import { describe, expect, inject, it } from 'vitest';
import { uniqueSlug } from '../support/factories.ts';
import { listeningSuite } from '../support/suite.ts';

let baseUrl: string;
listeningSuite((s) => {
  baseUrl = s.url;
});

const failure = (p: Promise<unknown>) =>
  p.then(
    () => null,
    (e: unknown) => e,
  );

describe('SDK: intake links', () => {
  it('an admin makes a link, a client with no credentials reads and uses it once, the admin lists and revokes', async () => {
    const root = new CofferClient({ baseUrl, clientId: 'root', clientSecret: inject('rootSecret') });
    const created = await root.call('createTenant', { body: { slug: uniqueSlug('sdkin'), name: 'SDK intake' } });
    const admin = new CofferClient({ baseUrl, ...created.admin });
    await admin.call('createEnvironment', { body: { slug: 'staging', name: 'Staging' } });
    const staging = new CofferClient({ baseUrl, ...created.admin, environment: 'staging' });

    // The client's environment applies; a call's own `env` wins.
    const link = await staging.createIntake('shared/payments/STRIPE_KEY', {
      prompt: { label: 'Stripe secret key', help: 'Dashboard → API keys' },
      expiresIn: 3600,
      format: 'stripe-secret-key',
    });
    expect(link.environment).toBe('staging');
    const other = await staging.createIntake(
      { kind: 'shared', owner: 'payments', name: 'OTHER' },
      {
        prompt: { label: 'Other' },
        expiresIn: 60,
        env: 'default',
      },
    );
    expect(other.environment).toBe('default');

    // The person: no credentials, the URL (or just its token) is enough.
    const person = new CofferClient({ baseUrl });
    expect(await person.getIntake(link.url)).toMatchObject({ name: 'STRIPE_KEY', format: 'stripe-secret-key' });
    expect(await person.getIntake(intakeTokenOf(link.url))).toMatchObject({ label: 'Stripe secret key' });
    expect(await failure(person.submitIntake(link.url, 'not-a-key'))).toMatchObject({
      code: 'unprocessable',
      status: 422,
    });
    expect((await person.submitIntake(link.url, 'sk_test_0123456789abcdefXYZ')).name).toBe('STRIPE_KEY');
    const again = await failure(person.submitIntake(link.url, 'sk_test_0123456789abcdefXYZ'));
    expect(again).toBeInstanceOf(CofferError);
    expect(again).toMatchObject({ code: 'gone', status: 410 });
    expect((await staging.getSecret('shared/payments/STRIPE_KEY')).value).toBe('sk_test_0123456789abcdefXYZ');

    const { items } = await admin.listIntakes();
    expect(items.map((l) => [l.path, l.environment, l.state])).toEqual([
      ['shared/payments/OTHER', 'default', 'pending'],
      ['shared/payments/STRIPE_KEY', 'staging', 'received'],
    ]);
    expect((await admin.revokeIntake(other.id)).state).toBe('revoked');
    expect((await admin.listIntakes({ state: 'pending' })).items).toEqual([]);
    expect(await failure(person.getIntake(other.url))).toMatchObject({ code: 'gone' });

    // Anything that is not a link is refused before a request is made.
    expect(() => intakeTokenOf('https://coffer.example.com/v1/intake/')).toThrow(CofferError);
    expect(intakeTokenOf('https://coffer.example.com/v1/intake/abc_DEF-1?x=1#y')).toBe('abc_DEF-1');
  });
});
