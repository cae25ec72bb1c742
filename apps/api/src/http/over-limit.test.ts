import { describe, expect, it } from 'vitest';
import { OverLimitTokens } from './over-limit.ts';

const sig = (n: number) => `${String(n).padStart(6, '0')}${'s'.repeat(40)}`;
const header = (signature: string) => `Bearer eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.${signature}`;

describe('OverLimitTokens', () => {
  it('keys a bearer token by its signature only, and refuses other shapes', () => {
    expect(OverLimitTokens.keyOf(header(sig(1)))).toBe(sig(1));
    expect(OverLimitTokens.keyOf(undefined)).toBeNull();
    expect(OverLimitTokens.keyOf(`Basic ${sig(1)}`)).toBeNull();
    expect(OverLimitTokens.keyOf('Bearer a.b.short')).toBeNull();
    expect(OverLimitTokens.keyOf('Bearer nodots')).toBeNull();
  });

  it('refuses a key until its window ends, with the seconds left rounded up', () => {
    const t = new OverLimitTokens();
    t.add(sig(1), 1_000, 5, 10_000);
    expect(t.check(sig(1), 10_000)).toEqual({ max: 5, retryAfterSeconds: 1, ttlMs: 1_000, pauseMs: 250 });
    expect(t.check(sig(1), 10_999)).toEqual({ max: 5, retryAfterSeconds: 1, ttlMs: 1, pauseMs: 1 });
    expect(t.check(sig(2), 10_000)).toBeNull();
    expect(t.check(sig(1), 11_000)).toBeNull();
    expect(t.size).toBe(0);
    t.add(sig(3), 2_500, 7, 0);
    expect(t.check(sig(3), 100)?.retryAfterSeconds).toBe(3);
    t.add(sig(4), 0, 7, 0);
    expect(t.check(sig(4), 0)).toBeNull();
  });

  it('stays bounded: expired entries go first, then the oldest', () => {
    const t = new OverLimitTokens(3);
    t.add(sig(1), 100, 1, 0);
    t.add(sig(2), 5_000, 1, 0);
    t.add(sig(3), 5_000, 1, 0);
    t.add(sig(4), 5_000, 1, 200); // sig(1) has expired: it makes room
    expect(t.size).toBe(3);
    expect([2, 3, 4].map((n) => t.check(sig(n), 300) !== null)).toEqual([true, true, true]);
    t.add(sig(5), 5_000, 1, 300); // none expired: the oldest (sig(2)) goes
    expect(t.size).toBe(3);
    expect([2, 3, 4, 5].map((n) => t.check(sig(n), 300) !== null)).toEqual([false, true, true, true]);
  });
});
