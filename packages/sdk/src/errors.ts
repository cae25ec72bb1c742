import type { ErrorCode, ErrorIssue } from '@coffer/contracts';

/** Every failure the SDK reports: the server's stable code, the HTTP status, and the request id to quote. */
export class CofferError extends Error {
  override readonly name = 'CofferError';

  constructor(
    readonly code: ErrorCode | 'network_error' | 'invalid_response',
    message: string,
    readonly status: number,
    readonly requestId: string | null,
    readonly details: ErrorIssue[] = [],
    readonly retryAfterSeconds: number | null = null,
  ) {
    super(message);
  }
}
