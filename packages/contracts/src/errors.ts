import { z } from 'zod';

/** Stable error codes. Clients switch on these; never rename one. */
export const ErrorCode = z
  .enum([
    'validation_failed',
    'unauthorized',
    'forbidden',
    'not_found',
    'method_not_allowed',
    'conflict',
    'consumers_pending',
    'gone',
    'expired',
    'payload_too_large',
    'unsupported_media_type',
    'unprocessable',
    'rate_limited',
    'integrity_error',
    'internal',
    'unavailable',
  ])
  .meta({ id: 'ErrorCode' });
export type ErrorCode = z.infer<typeof ErrorCode>;

/** The one mapping from error code to HTTP status. Exhaustive: a new code does not compile until it has a status. */
export function statusForCode(code: ErrorCode): number {
  switch (code) {
    case 'validation_failed':
      return 400;
    case 'unauthorized':
      return 401;
    case 'forbidden':
      return 403;
    case 'not_found':
      return 404;
    case 'method_not_allowed':
      return 405;
    case 'conflict':
    case 'consumers_pending':
      return 409;
    case 'gone':
    case 'expired':
      return 410;
    case 'payload_too_large':
      return 413;
    case 'unsupported_media_type':
      return 415;
    case 'unprocessable':
      return 422;
    case 'rate_limited':
      return 429;
    case 'integrity_error':
    case 'internal':
      return 500;
    case 'unavailable':
      return 503;
    default: {
      const unreachable: never = code;
      throw new Error(`unmapped error code ${String(unreachable)}`);
    }
  }
}

export const ErrorIssue = z.object({
  path: z.string().describe('Where the problem is, e.g. body.policies.0.path'),
  message: z.string(),
});
export type ErrorIssue = z.infer<typeof ErrorIssue>;

export const ErrorEnvelope = z
  .object({
    error: z.object({
      code: ErrorCode,
      message: z.string(),
      requestId: z.string(),
      details: z.array(ErrorIssue).optional(),
    }),
  })
  .meta({ id: 'Error' });
export type ErrorEnvelope = z.infer<typeof ErrorEnvelope>;
