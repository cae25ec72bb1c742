import { describe, expect, it } from 'vitest';
import { VerifiedTokens } from './authenticate.plugin.ts';
import type { TokenClaims } from './token-claims.ts';

const claims = (exp: number): TokenClaims => ({
  sub: '01a23546-c301-77af-bed9-0503e311eb94',
  tid: '01a23546-c301-77af-bed9-037f91b1596c',
  role: 'service',
  cv: 1,
  jti: 'jti-0123456789abcdef',
  iat: exp - 900,
  exp,
  clm: { team: 'payments' },
});

describe('VerifiedTokens', () => {
  it('remembers a token only until its expiry plus the verifier’s tolerance', () => {
    const v = new VerifiedTokens();
    const exp = 2_000_000_000;
    v.set('a.b.c', claims(exp));
    expect(v.get('a.b.c', exp * 1000 + 4_999)?.sub).toBe('01a23546-c301-77af-bed9-0503e311eb94');
    expect(v.get('a.b.c', exp * 1000 + 5_000)).toBeUndefined();
    // Gone for good: a later clock going backwards does not bring it back.
    expect(v.get('a.b.c', exp * 1000)).toBeUndefined();
  });

  it('matches the exact token text only, and hands out claims no request can change', () => {
    const v = new VerifiedTokens();
    const c = v.set('a.b.c', claims(2_000_000_000));
    expect(v.get('a.b.c ', 0)).toBeUndefined();
    expect(v.get('a.b.C', 0)).toBeUndefined();
    expect(() => {
      (c as { role: string }).role = 'admin';
    }).toThrow(TypeError);
    expect(() => {
      (c.clm as Record<string, string>).team = 'platform';
    }).toThrow(TypeError);
    expect(v.get('a.b.c', 0)?.role).toBe('service');
  });

  it('is bounded: the oldest token is forgotten first', () => {
    const v = new VerifiedTokens(2);
    v.set('t1', claims(2_000_000_000));
    v.set('t2', claims(2_000_000_000));
    v.set('t3', claims(2_000_000_000));
    expect(v.get('t1', 0)).toBeUndefined();
    expect(v.get('t2', 0)).toBeDefined();
    expect(v.get('t3', 0)).toBeDefined();
  });
});
