import { setTimeout as sleep } from 'node:timers/promises';
import fastifyRateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { AppError, audited } from '../errors/app-error.ts';
import { OverLimitTokens } from '../http/over-limit.ts';
import type { ReplicaRegistry } from '../jobs/replica-registry.ts';
import type { Metrics } from '../metrics/metrics.ts';

export interface RateLimitsOptions {
  metrics: Pick<Metrics, 'rateLimited'>;
  /** Both budgets are fleet-wide: each replica enforces its share. */
  replicas: Pick<ReplicaRegistry, 'share'>;
  /** Requests per second per identity, unless its tenant sets its own. */
  perSecond: number;
  /** Logins per minute per source address. */
  loginPerMinute: number;
}

const refusal = (context: { after: string; ttl: number }) =>
  audited(
    new AppError(
      'rate_limited',
      `rate limit exceeded: retry in ${context.after}`,
      undefined,
      Math.max(1, Math.ceil(context.ttl / 1000)),
    ),
  );

/**
 * Each identity gets its tenant's (or the default) requests per second across every route together, counted right
 * after authentication and before any database work of the handler; routes whose entry says `rateLimit: 'login'`
 * are counted per source address instead, before any credential is checked. Refusals are not audited (a flood
 * would otherwise write the audit log on the flooder's behalf).
 *
 * Hooks: the over-limit fast path (onRequest, so before authentication), the login limit (the route's own
 * onRequest) and the identity limit (preValidation, so after authentication has named the identity).
 */
async function rateLimitsPlugin(app: FastifyInstance, o: RateLimitsOptions): Promise<void> {
  const { metrics, replicas } = o;
  // A token refused for its identity's rate is remembered until the window ends and refused from then on before
  // any other work: a flood past the limit must not eat its neighbours' CPU (see OverLimitTokens).
  const overLimit = new OverLimitTokens();
  const refuseOverLimit = async (reply: FastifyReply, refused: NonNullable<ReturnType<OverLimitTokens['check']>>) => {
    // The same refusal the limiter gives (headers, envelope, metric), without verifying the token again, after a
    // short pause that slows a client ignoring Retry-After.
    metrics.rateLimited.inc({ kind: 'identity' });
    await sleep(refused.pauseMs);
    const seconds = refused.retryAfterSeconds;
    reply.headers({
      'x-ratelimit-limit': refused.max,
      'x-ratelimit-remaining': 0,
      'x-ratelimit-reset': seconds,
      'retry-after': seconds,
    });
    throw refusal({ after: `${seconds} second${seconds === 1 ? '' : 's'}`, ttl: refused.ttlMs });
  };
  // A callback hook with an asynchronous branch only for a refusal: every request passes through it.
  app.addHook('onRequest', (request, reply, done) => {
    if (!request.routeOptions.config?.action) return done();
    const key = OverLimitTokens.keyOf(request.headers.authorization);
    const refused = key ? overLimit.check(key) : null;
    if (!refused) return done();
    refuseOverLimit(reply, refused).then(() => done(), done);
  });

  // Before @fastify/rate-limit's own onRoute hook, which wires every route whose config carries `rateLimit`.
  app.addHook('onRoute', (route) => {
    const routeConfig = route.config as Record<string, unknown> | undefined;
    if (routeConfig?.rateLimitClass === 'login') {
      routeConfig.rateLimit = {
        hook: 'onRequest',
        groupId: 'login',
        timeWindow: 60_000,
        max: async () => replicas.share(o.loginPerMinute),
      };
    }
  });
  await app.register(fastifyRateLimit, {
    global: false,
    onExceeded: () => metrics.rateLimited.inc({ kind: 'login' }),
    errorResponseBuilder: (_req: FastifyRequest, context: { after: string; ttl: number }) => refusal(context),
  });

  // One counter per identity, shared by every route: a per-route limit would hand out a fresh budget per route.
  const identityLimit = app.rateLimit({
    timeWindow: 1000,
    keyGenerator: (req: FastifyRequest) => req.principal?.identityId ?? req.ip,
    max: async (req: FastifyRequest) => replicas.share(req.principal?.rateLimitPerSecond ?? o.perSecond),
    onExceeded: () => metrics.rateLimited.inc({ kind: 'identity' }),
    errorResponseBuilder: (req: FastifyRequest, context: { after: string; ttl: number; max: number }) => {
      const key = OverLimitTokens.keyOf(req.headers.authorization);
      if (key && req.principal) overLimit.add(key, context.ttl, context.max);
      return refusal(context);
    },
  });
  app.addHook('preValidation', async (request, reply) => {
    if (request.routeOptions.config?.action) await identityLimit.call(app, request, reply);
  });
}

export const rateLimits = fp(rateLimitsPlugin, { name: 'coffer-rate-limits', fastify: '5.x' });
