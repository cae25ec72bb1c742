import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { Metrics } from '../metrics/metrics.ts';

/** Counts and times every response by route name, so a dashboard groups by the contracts' names, not by URL. */
async function httpMetricsPlugin(app: FastifyInstance, o: { metrics: Metrics }): Promise<void> {
  const { metrics } = o;
  app.decorate('metrics', metrics);
  app.addHook('onResponse', async (request, reply) => {
    const labels = {
      route: request.routeOptions.config?.routeName ?? (request.routeOptions.url ? 'other' : 'unmatched'),
      method: request.method,
      status: String(reply.statusCode),
    };
    metrics.httpRequests.inc(labels);
    metrics.httpDuration.observe(labels, reply.elapsedTime / 1000);
  });
}

export const httpMetrics = fp(httpMetricsPlugin, { name: 'coffer-http-metrics', fastify: '5.x' });
