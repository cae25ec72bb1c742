import { describe, expect, it } from 'vitest';
import { AppError } from '../errors/app-error.ts';
import { bundleStep, type OutcomeFacts, type ReadOutcome, readStep } from './read-outcomes.ts';

const facts = (outcome: ReadOutcome): OutcomeFacts => ({
  outcome,
  version: 3,
  expires_at: new Date('2026-01-02T00:00:00Z'),
  served_until: new Date('2026-01-03T00:00:00Z'),
  revoked_at: new Date('2026-01-04T00:00:00Z'),
});

const failure = (outcome: ReadOutcome, wanted: number | 'previous' | undefined = undefined) => {
  try {
    readStep(facts(outcome), wanted);
  } catch (err) {
    if (err instanceof AppError) return { code: err.code, message: err.message };
    throw err;
  }
  throw new Error(`${outcome} did not fail`);
};

describe('read outcomes', () => {
  it('ok gives the value; a stale identity or data key is reloaded', () => {
    expect(readStep(facts('ok'), undefined)).toEqual({ next: 'value' });
    expect(readStep(facts('identity_changed'), undefined)).toEqual({ next: 'reload', stale: 'identity' });
    expect(readStep(facts('key_missing'), 2)).toEqual({ next: 'reload', stale: 'keys' });
  });

  it('every other outcome is the error the caller sees', () => {
    expect(failure('not_found')).toEqual({ code: 'not_found', message: 'secret not found' });
    expect(failure('no_version', 'previous')).toEqual({
      code: 'not_found',
      message: 'a previous version of the secret not found',
    });
    expect(failure('no_version', 7)).toEqual({ code: 'not_found', message: 'version 7 of the secret not found' });
    expect(failure('expired')).toEqual({ code: 'expired', message: 'the secret expired at 2026-01-02T00:00:00.000Z' });
    expect(failure('destroyed')).toEqual({ code: 'gone', message: 'version 3 was destroyed' });
    expect(failure('revoked')).toEqual({ code: 'gone', message: 'version 3 was revoked at 2026-01-04T00:00:00.000Z' });
    expect(failure('rotated_out')).toEqual({
      code: 'gone',
      message: 'version 3 was rotated out; its grace period ended at 2026-01-03T00:00:00.000Z',
    });
  });

  it('a bundle reloads a changed identity before missing keys, and keys before using any value', () => {
    expect(bundleStep([])).toEqual({ next: 'value' });
    expect(bundleStep([{ outcome: 'ok' }, { outcome: 'ok' }])).toEqual({ next: 'value' });
    expect(bundleStep([{ outcome: 'ok' }, { outcome: 'key_missing' }])).toEqual({ next: 'reload', stale: 'keys' });
    expect(bundleStep([{ outcome: 'key_missing' }, { outcome: 'identity_changed' }])).toEqual({
      next: 'reload',
      stale: 'identity',
    });
  });
});
