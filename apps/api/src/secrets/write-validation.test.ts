import { describe, expect, it } from 'vitest';
import { AppError } from '../errors/app-error.ts';
import { validateWrite, type WriteRequest } from './write-validation.ts';

const NOW = Date.parse('2026-06-01T00:00:00Z');

const refusal = (req: WriteRequest, max = 8) => {
  try {
    validateWrite(req, max, NOW);
  } catch (err) {
    if (err instanceof AppError) return { code: err.code, message: err.message, details: err.details };
    throw err;
  }
  throw new Error('the write was not refused');
};

describe('write validation (before any I/O)', () => {
  it('refuses a value over the limit, counted in UTF-8 bytes, naming where it was', () => {
    expect(validateWrite({ values: [{ value: '12345678', where: 'body.value' }] }, 8, NOW)).toEqual([]);
    expect(refusal({ values: [{ value: 'ééééé', where: 'body.set.A.value' }] })).toEqual({
      code: 'payload_too_large',
      message: 'the value is 10 bytes; the limit is 8',
      details: [{ path: 'body.set.A.value', message: 'must be at most 8 bytes' }],
    });
  });

  it('refuses an expiry that is not in the future; null and absent are fine', () => {
    expect(refusal({ expiresAt: '2026-06-01T00:00:00Z' })).toMatchObject({
      code: 'validation_failed',
      details: [{ path: 'body.expiresAt', message: 'must be in the future' }],
    });
    expect(validateWrite({ expiresAt: '2026-06-01T00:00:01Z' }, 8, NOW)).toEqual([]);
    expect(validateWrite({ expiresAt: null }, 8, NOW)).toEqual([]);
  });

  it('checks sizes before the expiry, as callers have always seen', () => {
    expect(
      refusal({ values: [{ value: 'x'.repeat(9), where: 'body.value' }], expiresAt: '2000-01-01T00:00:00Z' }).code,
    ).toBe('payload_too_large');
  });

  it('hands every new custom pattern to the transaction, and nothing for built-in or absent formats', () => {
    expect(
      validateWrite(
        {
          formats: [
            { format: { pattern: '^a+$', minLength: 1 }, where: 'body.set.A.format' },
            { format: 'hex', where: 'body.set.B.format' },
            { format: null, where: 'body.set.C.format' },
            { format: undefined, where: 'body.set.D.format' },
            { format: { maxLength: 3 }, where: 'body.set.E.format' },
          ],
        },
        8,
        NOW,
      ),
    ).toEqual([{ pattern: '^a+$', where: 'body.set.A.format.pattern' }]);
  });
});
