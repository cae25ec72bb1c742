import { describe, expect, it } from 'vitest';
import { LoginThrottle } from './login-throttle.ts';

describe('LoginThrottle', () => {
  const at = (clock: { t: number }) =>
    new LoginThrottle({
      maxFailures: 3,
      windowMs: 60_000,
      slowDownStepMs: 100,
      maxSlowDownMs: 1_000,
      now: () => clock.t,
    });

  it('client-id lockout from many addresses: failures spread over sources slow the client id down for all, never lock it', () => {
    const clock = { t: 0 };
    const throttle = at(clock);
    for (let i = 0; i < 30; i++) throttle.recordFailure('root', `198.51.100.${i}`);
    // No (client id, source) pair reached the limit, so nobody is refused…
    expect(throttle.retryAfterSeconds('root', '198.51.100.1')).toBe(0);
    expect(throttle.retryAfterSeconds('root', '203.0.113.9')).toBe(0);
    // …but every attempt on the attacked client id waits, up to the cap; other client ids do not.
    expect(throttle.slowDownMs('root')).toBe(1_000);
    expect(throttle.slowDownMs('other')).toBe(0);
    // A success elsewhere does not lift the slow-down while the attack's window lasts; the window's end does.
    throttle.recordSuccess('root', '203.0.113.9');
    expect(throttle.slowDownMs('root')).toBe(1_000);
    clock.t = 60_000;
    expect(throttle.slowDownMs('root')).toBe(0);
  });

  it('the slow-down starts at the failure limit and grows by one step per failure', () => {
    const throttle = at({ t: 0 });
    throttle.recordFailure('svc', 'a');
    throttle.recordFailure('svc', 'b');
    expect(throttle.slowDownMs('svc')).toBe(0);
    throttle.recordFailure('svc', 'c');
    expect(throttle.slowDownMs('svc')).toBe(100);
    throttle.recordFailure('svc', 'd');
    expect(throttle.slowDownMs('svc')).toBe(200);
  });

  it('a pair is refused once it reached the limit, for the rest of its window', () => {
    const clock = { t: 0 };
    const throttle = at(clock);
    for (let i = 0; i < 3; i++) throttle.recordFailure('svc', 'a');
    clock.t = 20_000;
    expect(throttle.retryAfterSeconds('svc', 'a')).toBe(40);
    expect(throttle.retryAfterSeconds('svc', 'b')).toBe(0);
    clock.t = 60_000;
    expect(throttle.retryAfterSeconds('svc', 'a')).toBe(0);
  });
});
