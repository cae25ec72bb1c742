import { type ErrorCode, type ErrorEnvelope, type ErrorIssue, statusForCode } from '@coffer/contracts';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors, isResponseSerializationError } from 'fastify-type-provider-zod';
import { attemptedResource, requestEvent } from '../audit/audit.events.ts';
import type { AuditSink } from '../audit/audit.sink.ts';
import { isDatabaseUnavailable, pgConstraint, pgErrorCode } from '../db/pg-errors.ts';
import { AppError } from './app-error.ts';

/** Fastify's own error codes that are the caller's fault, with the code and message we answer. */
const FASTIFY_CLIENT_ERRORS: Record<string, { code: ErrorCode; message: string }> = {
  FST_ERR_CTP_INVALID_JSON_BODY: { code: 'validation_failed', message: 'the body is not valid JSON' },
  FST_ERR_CTP_EMPTY_JSON_BODY: { code: 'validation_failed', message: 'the body is empty but its content type is JSON' },
  FST_ERR_CTP_BODY_TOO_LARGE: { code: 'payload_too_large', message: 'the body is larger than this server accepts' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { code: 'unsupported_media_type', message: 'send the body as application/json' },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { code: 'validation_failed', message: 'content-length does not match the body' },
  FST_ERR_CTP_INVALID_TYPE: { code: 'unsupported_media_type', message: 'the content type header is malformed' },
  FST_ERR_VALIDATION: { code: 'validation_failed', message: 'the request is malformed' },
  FST_ERR_BAD_URL: { code: 'validation_failed', message: 'the URL is malformed' },
  FST_ERR_ASYNC_CONSTRAINT: { code: 'validation_failed', message: 'the request is malformed' },
  FAST_JWT_INVALID_ALGORITHM: { code: 'unauthorized', message: 'invalid token' },
};

/**
 * Issue paths from zod, as `body.policies.0.path`; messages from zod name the rule, never the value. An unknown
 * field becomes one issue per field, at the field's own path, so a typo (`ifversion`) is named where it was sent.
 */
function zodIssues(err: FastifyError): ErrorIssue[] {
  const validation = (
    err as {
      validation?: {
        keyword?: string;
        instancePath?: string;
        message?: string;
        params?: {
          keys?: unknown;
          errors?: { code?: string; keys?: unknown; path?: PropertyKey[] }[][];
          issue?: {
            path?: PropertyKey[];
            message?: string;
            errors?: { code?: string; keys?: unknown; path?: PropertyKey[] }[][];
          };
        };
      }[];
    }
  ).validation;
  const context = (err as { validationContext?: string }).validationContext ?? 'request';
  return (validation ?? [])
    .flatMap((v) => {
      const issuePath = v.params?.issue?.path ?? v.instancePath?.split('/').filter(Boolean) ?? [];
      const at = (extra: string[] = []) => [context, ...issuePath.map(String), ...extra].join('.');
      const keys = v.params?.keys;
      if (v.keyword === 'unrecognized_keys' && Array.isArray(keys)) {
        // Cut long keys: the answer should name a typo, not echo whatever a client put in a key.
        return keys.map((k) => ({ path: at([String(k).slice(0, 64)]), message: 'unknown field' }));
      }
      // A body of one of several forms (a token request): a field that every form refuses as unknown is named as for
      // any other body, beside the union's own complaint.
      if (v.keyword === 'invalid_union') {
        const branches = v.params?.issue?.errors ?? v.params?.errors ?? [];
        const unknownIn = (branch: { code?: string; keys?: unknown; path?: PropertyKey[] }[]) =>
          new Set(
            branch
              .filter((i) => i.code === 'unrecognized_keys' && (i.path ?? []).length === 0 && Array.isArray(i.keys))
              .flatMap((i) => (i.keys as unknown[]).map(String)),
          );
        const [first, ...rest] = branches.map(unknownIn);
        const everywhere = [...(first ?? [])].filter((k) => rest.every((b) => b.has(k)));
        if (everywhere.length > 0) {
          return [
            ...everywhere.map((k) => ({ path: at([k.slice(0, 64)]), message: 'unknown field' })),
            { path: at(), message: v.params?.issue?.message ?? v.message ?? 'invalid' },
          ];
        }
      }
      return [{ path: at(), message: v.params?.issue?.message ?? v.message ?? 'invalid' }];
    })
    .slice(0, 20);
}

/** The envelope's message: names unknown fields outright, since they are the error a client most needs to see. */
function validationMessage(issues: readonly ErrorIssue[]): string {
  const unknown = issues.filter((i) => i.message === 'unknown field').map((i) => i.path);
  return unknown.length ? `unknown field: ${unknown.join(', ')}` : 'the request does not match the schema';
}

export function toEnvelope(code: ErrorCode, message: string, requestId: string, details?: ErrorIssue[]): ErrorEnvelope {
  return { error: { code, message, requestId, ...(details?.length ? { details } : {}) } };
}

export interface Classified {
  code: ErrorCode;
  message: string;
  details?: ErrorIssue[];
  retryAfter?: number;
}

/** Decides what the caller learns about an error. Anything unrecognised is a 500 whose message says nothing. */
export function classifyError(err: unknown): Classified {
  // Something threw a string, null or undefined: there is nothing to learn from it, and nothing to show.
  if (typeof err !== 'object' || err === null) return { code: 'internal', message: 'internal error' };
  if (err instanceof AppError) {
    return { code: err.code, message: err.message, details: err.details, retryAfter: err.retryAfter };
  }
  const fe = err as FastifyError;
  if (hasZodFastifySchemaValidationErrors(fe)) {
    const details = zodIssues(fe);
    return { code: 'validation_failed', message: validationMessage(details), details };
  }
  if (isResponseSerializationError(fe)) {
    return { code: 'internal', message: 'internal error' };
  }
  const known = fe.code ? FASTIFY_CLIENT_ERRORS[fe.code] : undefined;
  if (known) return { ...known };
  if (typeof fe.code === 'string' && fe.code.startsWith('FST_JWT')) {
    return { code: 'unauthorized', message: 'invalid token' };
  }
  if (typeof fe.statusCode === 'number' && fe.statusCode === 429) {
    return { code: 'rate_limited', message: 'too many requests, slow down', retryAfter: 1 };
  }
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    return { code: 'validation_failed', message: 'the request is malformed' };
  }
  const pgCode = pgErrorCode(err);
  if (pgCode === '23505') {
    return { code: 'conflict', message: `already exists (${pgConstraint(err) ?? 'unique constraint'})` };
  }
  if (isDatabaseUnavailable(err)) {
    return { code: 'unavailable', message: 'the database is unavailable, retry shortly', retryAfter: 1 };
  }
  return { code: 'internal', message: 'internal error' };
}

export function sendError(request: FastifyRequest, reply: FastifyReply, c: Classified): FastifyReply {
  const status = statusForCode(c.code);
  if (c.retryAfter !== undefined) reply.header('retry-after', String(c.retryAfter));
  return reply.code(status).send(toEnvelope(c.code, c.message, request.id, c.details));
}

/**
 * One handler for every error: the envelope, the stable code, and nothing internal in a 5xx. A failed request
 * to a route with an action gets its audit event here (denied for 401/403, error otherwise), unless whoever
 * threw already wrote one; if even that cannot be written, the answer is 503.
 */
export function registerErrorHandling(app: FastifyInstance, audit: Pick<AuditSink, 'record'>): void {
  app.setErrorHandler(async (err, request, reply) => {
    let c = classifyError(err);
    const status = statusForCode(c.code);
    if (status >= 500 && c.code !== 'unavailable') {
      request.log.error({ err }, 'request failed');
    } else if (c.code === 'unavailable') {
      request.log.warn({ err: { message: (err as Error).message, code: pgErrorCode(err) } }, 'dependency unavailable');
    }
    const action = request.routeOptions.config.action;
    const alreadyAudited = err instanceof AppError && err.audited;
    if (action && !alreadyAudited) {
      try {
        await audit.record(
          requestEvent(request, {
            action,
            outcome: status === 401 || status === 403 ? 'denied' : 'error',
            errorCode: c.code,
            resource: attemptedResource(request),
          }),
        );
      } catch {
        c = { code: 'unavailable', message: 'the audit log is unavailable, so the request was refused', retryAfter: 1 };
      }
    }
    return sendError(request, reply, c);
  });

  app.setNotFoundHandler((request, reply) =>
    sendError(request, reply, {
      code: 'not_found',
      message: `no route for ${request.method} ${request.url.split('?')[0]}`,
    }),
  );
}
