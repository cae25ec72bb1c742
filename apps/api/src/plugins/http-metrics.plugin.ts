import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { Metrics } from '../metrics/metrics.ts';

/** Counts and times every response by route name, so a dashboard groups by the contracts' names, not by URL. */
async function httpMetricsPlugin(app: FastifyInstance, o: { metrics: Metrics }): Promise<void> {
  const { metrics } = o;
  app.decorate('metrics', metrics);
  // Each (route, method, status) resolves its counter and histogram series once: prom-client would otherwise hash
  // the label set on every response. The set is bounded: routes come from the route table, statuses are a few.
  const series = new Map<string, { count: () => void; time: (seconds: number) => void }>();
  app.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions.config?.routeName ?? (request.routeOptions.url ? 'other' : 'unmatched');
    const key = `${route} ${request.method} ${reply.statusCode}`;
    let s = series.get(key);
    if (!s) {
      const labels = { route, method: request.method, status: String(reply.statusCode) };
      const requests = metrics.httpRequests.labels(labels);
      const duration = metrics.httpDuration.labels(labels);
      s = { count: () => requests.inc(), time: (seconds) => duration.observe(seconds) };
      series.set(key, s);
    }
    s.count();
    s.time(reply.elapsedTime / 1000);
    done();
  });
}

export const httpMetrics = fp(httpMetricsPlugin, { name: 'coffer-http-metrics', fastify: '5.x' });
