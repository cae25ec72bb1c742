import { type ErrorCode, ErrorEnvelope, type ErrorIssue } from '@coffer/contracts';

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

/**
 * The CofferError for an answer that is not a success: the server's error envelope when the body is one, else
 * (a proxy's page, say) `unavailable` for a 503 and `invalid_response` otherwise. Exported for callers that make a
 * request themselves and want the client's errors (the CLI's `run` does, to start without loading the client).
 */
export function errorFromResponse(status: number, headers: Headers, text: string): CofferError {
  const retryAfter = Number(headers.get('retry-after'));
  let envelope: ErrorEnvelope | undefined;
  try {
    envelope = ErrorEnvelope.parse(JSON.parse(text));
  } catch {
    // not an envelope
  }
  return new CofferError(
    envelope?.error.code ?? (status === 503 ? 'unavailable' : 'invalid_response'),
    envelope?.error.message ?? `HTTP ${status}`,
    status,
    envelope?.error.requestId ?? headers.get('x-request-id'),
    envelope?.error.details ?? [],
    Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : null,
  );
}
