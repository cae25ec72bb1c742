import type { Policy } from '@coffer/contracts';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { capabilitiesFor, grantsOnEveryName, matchGlob, policyAllows, type StepMeter } from './policy.ts';

const p = (path: string, ...capabilities: Policy['capabilities']): Policy => ({ path, capabilities });
const caps = (policies: Policy[], path: string) => [...capabilitiesFor(policies, path)].sort();

describe('policy globs', () => {
  it('`*` matches within one segment and never crosses /', () => {
    const policies = [p('sandbox/*', 'read')];
    expect(policyAllows(policies, 'read', 'sandbox/sbx-42/KEY')).toBe(false);
    expect(policyAllows([p('sandbox/*/KEY', 'read')], 'read', 'sandbox/sbx-42/KEY')).toBe(true);
    expect(policyAllows([p('sandbox/sbx-4*/*', 'read')], 'read', 'sandbox/sbx-42/KEY')).toBe(true);
    expect(policyAllows([p('sandbox/sbx-4*', 'read')], 'read', 'sandbox/sbx-42/KEY')).toBe(false);
  });

  it('`**` matches any number of whole segments', () => {
    expect(policyAllows([p('sandbox/**', 'read')], 'read', 'sandbox/sbx-42/KEY')).toBe(true);
    expect(policyAllows([p('**', 'read')], 'read', 'user/u1/OPENAI_API_KEY')).toBe(true);
    expect(policyAllows([p('**/OPENAI_API_KEY', 'read')], 'read', 'user/u1/OPENAI_API_KEY')).toBe(true);
    expect(policyAllows([p('**/OPENAI_API_KEY', 'read')], 'read', 'user/u1/OTHER')).toBe(false);
    expect(policyAllows([p('user/**/KEY', 'read')], 'read', 'user/u1/KEY')).toBe(true);
    expect(policyAllows([p('shared/**', 'read')], 'read', 'sandbox/x/KEY')).toBe(false);
  });

  it('`?` matches exactly one character', () => {
    expect(policyAllows([p('sandbox/sbx-?/KEY', 'read')], 'read', 'sandbox/sbx-4/KEY')).toBe(true);
    expect(policyAllows([p('sandbox/sbx-?/KEY', 'read')], 'read', 'sandbox/sbx-42/KEY')).toBe(false);
  });

  it('treats regex characters in a path literally', () => {
    expect(policyAllows([p('shared/a.b/KEY', 'read')], 'read', 'shared/aXb/KEY')).toBe(false);
    expect(policyAllows([p('shared/a.b/KEY', 'read')], 'read', 'shared/a.b/KEY')).toBe(true);
  });

  it('matches the examples of the design', () => {
    expect(policyAllows([p('shared/payments/STRIPE_*', 'read')], 'read', 'shared/payments/STRIPE_SECRET_KEY')).toBe(
      true,
    );
    expect(policyAllows([p('shared/payments/STRIPE_*', 'read')], 'read', 'shared/payments/PAYPAL_KEY')).toBe(false);
    expect(policyAllows([p('user/*/OPENAI_API_KEY', 'read')], 'read', 'user/alice/OPENAI_API_KEY')).toBe(true);
  });
});

describe('most specific wins', () => {
  const policies = [
    p('sandbox/sbx-42/*', 'read', 'list', 'write'),
    p('sandbox/sbx-42/ADMIN_*', 'list'),
    p('sandbox/sbx-42/ADMIN_TOKEN', 'read'),
    p('sandbox/**', 'list'),
  ];

  it('a literal beats a partial glob, which beats *, which beats **', () => {
    expect(caps(policies, 'sandbox/sbx-42/DB_URL')).toEqual(['list', 'read', 'write']);
    expect(caps(policies, 'sandbox/sbx-42/ADMIN_KEY')).toEqual(['list']);
    expect(caps(policies, 'sandbox/sbx-42/ADMIN_TOKEN')).toEqual(['read']);
    expect(caps(policies, 'sandbox/other/X')).toEqual(['list']);
  });

  it('a narrower policy can take away what a broader one grants', () => {
    expect(policyAllows(policies, 'read', 'sandbox/sbx-42/ADMIN_KEY')).toBe(false);
  });

  it('equally specific matches grant the union of their capabilities', () => {
    // Specificity is read from the left: a literal owner outranks a literal name under a wildcard owner.
    expect(caps([p('shared/*/KEY', 'read'), p('shared/team/*', 'list')], 'shared/team/KEY')).toEqual(['list']);
    expect(caps([p('shared/a*/KEY', 'read'), p('shared/*b/KEY', 'list')], 'shared/ab/KEY')).toEqual(['list', 'read']);
    expect(caps([p('shared/team/KEY', 'read'), p('shared/team/KEY', 'list')], 'shared/team/KEY')).toEqual([
      'list',
      'read',
    ]);
  });

  it('no matching policy is no access', () => {
    expect(caps(policies, 'shared/payments/X')).toEqual([]);
    expect(caps([], 'sandbox/sbx-42/DB_URL')).toEqual([]);
  });
});

describe('matching cost', () => {
  const stepsFor = (glob: string, path: string) => {
    const meter: StepMeter = { steps: 0 };
    const matched = matchGlob(glob, path, meter);
    return { matched, steps: meter.steps };
  };

  it('ReDoS: a policy glob with many stars matches a long name in linear steps', () => {
    // The shape that froze the event loop for seconds as a RegExp: stars separated by a letter the name is full
    // of, and a last letter the name never has, so every way of splitting the name between the stars fails.
    for (const glob of [
      'sandbox/x/*a*a*a*a*a*b',
      `sandbox/x/${'*a'.repeat(20)}*b`,
      `*a*a*a*a/*a*a*a*a/${'*a'.repeat(8)}*b`,
    ]) {
      let previous = 0;
      for (const length of [64, 128, 256, 512]) {
        const path = `sandbox/x/${'a'.repeat(length)}`;
        const { matched, steps } = stepsFor(glob, path);
        expect(matched).toBe(false);
        // Never more than one step per (glob character, path character) pair, plus one per segment boundary.
        expect(steps).toBeLessThanOrEqual((glob.length + 1) * (path.length + 1));
        // Doubling the name at most doubles the work (and a little): linear in the name, not exponential.
        if (previous) expect(steps).toBeLessThanOrEqual(previous * 2 + glob.length * 4);
        previous = steps;
      }
    }
    expect(stepsFor('sandbox/x/*a*a*a*a*a*b', `sandbox/x/${'a'.repeat(128)}b`).matched).toBe(true);
  });

  it('ReDoS: `**` segments against a path cost a bounded number of segment matches', () => {
    const { matched, steps } = stepsFor('**/**/**', `sandbox/${'o'.repeat(128)}/${'n'.repeat(128)}`);
    expect(matched).toBe(true);
    expect(steps).toBeLessThan(100);
  });

  it('the matcher agrees with the glob rules on the usual shapes', () => {
    expect(matchGlob('sandbox/*/KEY', 'sandbox/sbx-42/KEY')).toBe(true);
    expect(matchGlob('sandbox/*', 'sandbox/sbx-42/KEY')).toBe(false);
    expect(matchGlob('**', 'sandbox/sbx-42/KEY')).toBe(true);
    expect(matchGlob('**/KEY', 'sandbox/sbx-42/KEY')).toBe(true);
    expect(matchGlob('sandbox/**/KEY', 'sandbox/sbx-42/KEY')).toBe(true);
    expect(matchGlob('sandbox/sbx-42/**', 'sandbox/sbx-42/KEY')).toBe(true);
    expect(matchGlob('sandbox/sbx-42/KEY/**', 'sandbox/sbx-42/KEY')).toBe(true);
    expect(matchGlob('sandbox/s?x-42/K*Y', 'sandbox/sbx-42/KEY')).toBe(true);
    expect(matchGlob('sandbox/s?x-42/K*Z', 'sandbox/sbx-42/KEY')).toBe(false);
    expect(matchGlob('sandbox/sbx-42/*KEY*', 'sandbox/sbx-42/KEY')).toBe(true);
    expect(matchGlob('sandbox/sbx-42/KEY?', 'sandbox/sbx-42/KEY')).toBe(false);
    expect(matchGlob('shared/**/x/**', 'shared/a/b')).toBe(false);
  });
});

describe('capabilitiesFor keeps its answers per policy set', () => {
  it('answers each path and environment as computed afresh, and another policy set on its own', () => {
    const narrow: Policy[] = [
      { path: 'shared/payments/*', capabilities: ['read'] },
      { path: 'shared/payments/STRIPE_KEY', capabilities: ['write'], environments: ['prod'] },
    ];
    for (let i = 0; i < 3; i++) {
      expect([...capabilitiesFor(narrow, 'shared/payments/STRIPE_KEY')]).toEqual(['read']);
      expect([...capabilitiesFor(narrow, 'shared/payments/STRIPE_KEY', 'prod')]).toEqual(['write']);
      expect([...capabilitiesFor(narrow, 'shared/billing/STRIPE_KEY')]).toEqual([]);
    }
    // The same paths under a wider set: its own answers, not the first set's.
    const wide: Policy[] = [{ path: '**', capabilities: ['read', 'list'] }];
    expect([...capabilitiesFor(wide, 'shared/billing/STRIPE_KEY')].sort()).toEqual(['list', 'read']);
    expect([...capabilitiesFor(narrow, 'shared/billing/STRIPE_KEY')]).toEqual([]);
  });

  it('stays right past its bound', () => {
    const policies: Policy[] = [{ path: 'sandbox/app/KEEP_*', capabilities: ['read'] }];
    for (let i = 0; i < 2_500; i++) {
      const name = i % 2 ? `KEEP_${i}` : `DROP_${i}`;
      expect(capabilitiesFor(policies, `sandbox/app/${name}`).has('read')).toBe(i % 2 === 1);
    }
  });
});

describe('grantsOnEveryName: a bundle read that needs no list of names', () => {
  const names = ['DATABASE_URL', 'KEY_0', 'KEY_1', 'STRIPE_KEY', 'a', 'x?y', 'constructor'];

  it('is never true where some name would be refused (any policies, environments, kinds and owners)', () => {
    const segment = fc.constantFrom(
      '*',
      '**',
      'sandbox',
      'shared',
      'app',
      'pay*',
      'KEY_*',
      'KEY_?',
      'DATABASE_URL',
      'a',
    );
    const policy = fc.record(
      {
        path: fc.array(segment, { minLength: 1, maxLength: 4 }).map((xs) => xs.join('/')),
        capabilities: fc.subarray(['read', 'list', 'write'] as const, { minLength: 1 }),
        environments: fc.option(fc.array(fc.constantFrom('default', 'prod', 'p*', '*'), { maxLength: 2 }), {
          nil: undefined,
        }),
      },
      { requiredKeys: ['path', 'capabilities'] },
    );
    fc.assert(
      fc.property(
        fc.array(policy, { maxLength: 4 }),
        fc.constantFrom('sandbox', 'shared'),
        fc.constantFrom('app', 'payments'),
        fc.constantFrom('default', 'prod'),
        (policies, kind, owner, env) => {
          const ps = policies as Policy[];
          if (!grantsOnEveryName(ps, 'read', kind, owner, env)) return;
          for (const n of names) expect(capabilitiesFor(ps, `${kind}/${owner}/${n}`, env).has('read')).toBe(true);
        },
      ),
      { numRuns: 3_000 },
    );
  });

  it('sees the common shapes', () => {
    expect(grantsOnEveryName([p('sandbox/app/*', 'read')], 'read', 'sandbox', 'app')).toBe(true);
    expect(grantsOnEveryName([p('sandbox/**', 'read', 'list')], 'read', 'sandbox', 'app')).toBe(true);
    expect(grantsOnEveryName([p('**', 'read')], 'read', 'shared', 'payments')).toBe(true);
    // A narrower policy that takes read away from one name, or a policy for another owner only.
    expect(
      grantsOnEveryName([p('sandbox/app/*', 'read'), p('sandbox/app/ROOT', 'list')], 'read', 'sandbox', 'app'),
    ).toBe(false);
    expect(grantsOnEveryName([p('sandbox/other/*', 'read')], 'read', 'sandbox', 'app')).toBe(false);
    expect(grantsOnEveryName([p('sandbox/app/KEY_*', 'read')], 'read', 'sandbox', 'app')).toBe(false);
    // Only where the policy applies.
    const inProd: Policy[] = [{ path: 'sandbox/app/*', capabilities: ['read'], environments: ['prod'] }];
    expect(grantsOnEveryName(inProd, 'read', 'sandbox', 'app')).toBe(false);
    expect(grantsOnEveryName(inProd, 'read', 'sandbox', 'app', 'prod')).toBe(true);
  });
});
