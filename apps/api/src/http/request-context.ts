import type { FastifyRequest } from 'fastify';
import type { Principal } from '../auth/principal.ts';

/** What services need to know about the request they serve: who, and where from. No Fastify types past here. */
export interface RequestContext {
  principal: Principal | null;
  requestId: string;
  sourceIp: string | null;
  userAgent: string | null;
}

export function requestContext(request: FastifyRequest): RequestContext {
  const ua = request.headers['user-agent'];
  return {
    principal: request.principal,
    requestId: request.id,
    sourceIp: request.ip ?? null,
    userAgent: ua ? ua.slice(0, 256) : null,
  };
}
