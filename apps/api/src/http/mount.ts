import { ErrorEnvelope, type RouteDef, type RouteName, type RouteOutput, routes } from '@coffer/contracts';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** From the route's entry in the contracts (see RouteDef): authentication may use a cached identity. */
    identityRecheckedInSql?: boolean;
    /** From the route's entry in the contracts: the rate-limit class other than the identity's own. */
    rateLimitClass?: RouteDef['rateLimit'];
  }
}

type Parsed<S> = S extends z.ZodType ? z.output<S> : undefined;

/** A request whose params, query and body have been validated against the route's contract. */
export type RouteRequest<R extends RouteDef> = Omit<FastifyRequest, 'params' | 'query' | 'body'> & {
  params: R extends { params: infer P } ? Parsed<P> : Record<string, never>;
  query: R extends { query: infer Q } ? Parsed<Q> : Record<string, never>;
  body: R extends { body: infer B } ? Parsed<B> : undefined;
};

export type RouteHandler<R extends RouteDef> = (
  request: RouteRequest<R>,
  reply: FastifyReply,
) => Promise<RouteOutput<R>>;

/** Error responses each kind of route can give, for the OpenAPI document. */
function errorResponses(def: RouteDef): Record<number, z.ZodType> {
  const statuses = [400, 413, 429, 500, 503];
  if (def.body) statuses.push(415);
  if (def.action) statuses.push(401, 403, 404, 409);
  else if (def.method !== 'GET') statuses.push(401);
  return Object.fromEntries(statuses.map((s) => [s, ErrorEnvelope]));
}

/**
 * Registers one route of the contracts' route table: its schemas validate the request and the response, its
 * declared action drives authentication and authorization. Routes are mounted only through here, and the app
 * refuses to start if one of the table's routes is missing or a /v1 route did not come through here.
 */
export function mount<N extends RouteName>(
  app: FastifyInstance,
  name: N,
  handler: RouteHandler<(typeof routes)[N]>,
): void {
  const def: RouteDef = routes[name];
  const [firstStatus] = Object.keys(def.success).map(Number);
  const response: Record<number, z.ZodType> = { ...errorResponses(def) };
  for (const [status, schema] of Object.entries(def.success)) {
    // A body-less success (204) is documented as such; Fastify sends nothing for it.
    response[Number(status)] = schema ?? z.null().describe('No content');
  }
  app.route({
    method: def.method,
    url: def.path,
    schema: {
      operationId: name,
      summary: def.summary,
      tags: [def.tag],
      ...(def.params ? { params: def.params } : {}),
      ...(def.query ? { querystring: def.query } : {}),
      ...(def.body ? { body: def.body } : {}),
      response,
      // Public routes say so (`[]`), rather than leaving a reader to guess.
      security: def.action ? [{ bearerAuth: [] }] : [],
    },
    config: {
      routeName: name,
      action: def.action,
      identityRecheckedInSql: def.identityRecheckedInSql === true,
      rateLimitClass: def.rateLimit,
    },
    ...(def.action ? { onRequest: [app.authenticate] } : {}),
    handler: async (request, reply) => {
      reply.code(firstStatus ?? 200);
      const out = await handler(request as unknown as RouteRequest<(typeof routes)[N]>, reply);
      if (def.success[204] === null && reply.statusCode === 204) return reply.send();
      return out;
    },
  });
}
