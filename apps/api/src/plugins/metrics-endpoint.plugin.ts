import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { AppError } from '../errors/app-error.ts';
import type { Metrics } from '../metrics/metrics.ts';

/**
 * /metrics on the API port, behind its own bearer token; without a token configured there is no such route
 * (main.ts can serve it on a separate port instead). Registered after the error handler, so a wrong token answers
 * the envelope like every other route.
 */
async function metricsEndpointPlugin(
  app: FastifyInstance,
  o: { metrics: Pick<Metrics, 'registry'>; token: string | null },
): Promise<void> {
  if (!o.token) return;
  const { registry } = o.metrics;
  const expected = Buffer.from(`Bearer ${o.token}`);
  app.get('/metrics', { schema: { hide: true } }, async (request, reply) => {
    const given = Buffer.from(request.headers.authorization ?? '');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new AppError('unauthorized', 'the metrics token is required');
    }
    reply.type(registry.contentType);
    return registry.metrics();
  });
}

export const metricsEndpoint = fp(metricsEndpointPlugin, { name: 'coffer-metrics-endpoint', fastify: '5.x' });
