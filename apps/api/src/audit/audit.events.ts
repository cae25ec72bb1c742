import { DEFAULT_ENVIRONMENT, PLATFORM_TENANT_ID } from '@coffer/contracts';
import type { FastifyRequest } from 'fastify';
import { type RequestContext, requestContext } from '../http/request-context.ts';
import type { AuditEvent } from './audit.types.ts';

/**
 * What a caller says of an event. `environment` names the environment of the secret the event is about: kept in the
 * event's details (`details.environment`) unless it is `default`, so every event about `default` reads, and chains,
 * exactly as events did before environments existed.
 */
export type EventInput = Pick<AuditEvent, 'action' | 'outcome'> & Partial<AuditEvent> & { environment?: string };

function withEnvironment<T extends { environment?: string; details?: AuditEvent['details'] }>(
  e: T,
): Omit<T, 'environment'> {
  const { environment, ...rest } = e;
  if (environment === undefined || environment === DEFAULT_ENVIRONMENT) return rest;
  return { ...rest, details: { ...(rest.details ?? {}), environment } };
}

/**
 * An audit event for a request, attributed to its principal (or to nobody, in the platform's chain, when the
 * caller is not authenticated). The caller names the action and outcome and whatever else it knows.
 */
export function auditEvent(ctx: RequestContext, e: EventInput): AuditEvent {
  const p = ctx.principal;
  return {
    tenantId: p?.tenantId ?? PLATFORM_TENANT_ID,
    occurredAt: new Date(),
    actorId: p?.identityId ?? null,
    actorName: p?.name ?? null,
    resource: null,
    version: null,
    errorCode: null,
    requestId: ctx.requestId,
    sourceIp: ctx.sourceIp,
    userAgent: ctx.userAgent,
    fingerprint: null,
    details: null,
    ...withEnvironment(e),
  };
}

/**
 * The service's own actors. A job's event names its actor and no request; the scheduler's events keep the request id
 * and user agent they have always carried, so queries by either still find them.
 */
const SYSTEM_ACTORS = {
  system: { requestId: null, userAgent: null },
  scheduler: { requestId: 'scheduler', userAgent: 'coffer-scheduler' },
} as const;

export type SystemActor = keyof typeof SYSTEM_ACTORS;

/** An audit event the service originates itself (a job, the scheduler): no principal, no source address. */
export function systemEvent(actor: SystemActor, e: EventInput & Pick<AuditEvent, 'tenantId'>): AuditEvent {
  return {
    occurredAt: new Date(),
    actorId: null,
    actorName: actor,
    resource: null,
    version: null,
    errorCode: null,
    sourceIp: null,
    fingerprint: null,
    details: null,
    ...SYSTEM_ACTORS[actor],
    ...withEnvironment(e),
  };
}

export function requestEvent(request: FastifyRequest, e: EventInput): AuditEvent {
  return auditEvent(requestContext(request), e);
}

/** What a request was aimed at, for events written before a service knew better: the path under /v1, clipped. */
export function attemptedResource(request: FastifyRequest): string {
  // Secret and bundle routes name their resource the way their events do: kind/owner[/name].
  const params = request.params as Record<string, unknown> | undefined;
  if (typeof params?.kind === 'string' && typeof params.owner === 'string') {
    return [params.kind, params.owner, params.name]
      .filter((x) => typeof x === 'string')
      .join('/')
      .slice(0, 512);
  }
  const pathOnly = request.url.split('?')[0] ?? '';
  let decoded = pathOnly;
  try {
    decoded = decodeURIComponent(pathOnly);
  } catch {
    // keep it encoded
  }
  return decoded.replace(/^\/v1\//, '').slice(0, 512);
}
