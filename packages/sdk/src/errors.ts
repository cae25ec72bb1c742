import type { ErrorCode, ErrorIssue } from '@coffer/contracts';

/** Codes the SDK adds to the server's: the server could not be reached, or answered outside the contract. */
export type ClientErrorCode = 'network_error' | 'invalid_response';

/** Every failure the SDK reports: the server's stable code, the HTTP status, and the request id to quote. */
export class CofferError extends Error {
  override readonly name = 'CofferError';

  constructor(
    readonly code: ErrorCode | ClientErrorCode,
    message: string,
    /** The HTTP status; 0 when no response arrived or the SDK refused the input before sending it. */
    readonly status: number,
    readonly requestId: string | null,
    readonly details: ErrorIssue[] = [],
    readonly retryAfterSeconds: number | null = null,
  ) {
    super(message);
  }
}

export const isCofferError = (err: unknown): err is CofferError => err instanceof CofferError;
