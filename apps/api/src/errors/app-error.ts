import type { ErrorCode, ErrorIssue } from '@coffer/contracts';

/**
 * The one error type services throw. The message is shown to the caller, so it names what is wrong with the
 * request and never carries a value, key or token.
 */
export class AppError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: ErrorIssue[],
    /** Seconds, for `Retry-After` on 429 and 503. */
    readonly retryAfter?: number,
    /** Already written to the audit log by whoever threw it; the error handler must not add another event. */
    readonly audited = false,
  ) {
    // An answer, not a fault: no stack trace is captured (it was the costliest step of a 429 under a flood),
    // except for 'internal', whose stack is logged.
    const limit = Error.stackTraceLimit;
    if (code !== 'internal') Error.stackTraceLimit = 0;
    super(message);
    Error.stackTraceLimit = limit;
    this.name = 'AppError';
  }
}

export const notFound = (what: string) => new AppError('not_found', `${what} not found`);
export const forbidden = (message = 'this identity may not do that') => new AppError('forbidden', message);
export const unauthorized = (message = 'a valid bearer token is required') => new AppError('unauthorized', message);
export const conflict = (message: string) => new AppError('conflict', message);
export const unavailable = (message = 'the service is temporarily unavailable, retry shortly', retryAfter = 1) =>
  new AppError('unavailable', message, undefined, retryAfter);

/** The same error, marked as already audited. */
export function audited(err: AppError): AppError {
  return new AppError(err.code, err.message, err.details, err.retryAfter, true);
}
