import { type RouteName, routes } from '@coffer/contracts';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';

/**
 * Every route under /v1 comes from the contracts' table through mount(), which declares its action and policy: a
 * route that does not is a build error, and so is a route of the table that nobody mounted.
 */
async function routeTablePlugin(app: FastifyInstance): Promise<void> {
  const mounted = new Set<string>();
  app.addHook('onRoute', (route) => {
    const name = route.config?.routeName;
    if (name) mounted.add(name);
    else if (route.url.startsWith('/v1')) {
      throw new Error(`${route.method} ${route.url} was not mounted from the contracts' route table`);
    }
  });
  app.addHook('onReady', async () => {
    const missing = (Object.keys(routes) as RouteName[]).filter((n) => !mounted.has(n));
    if (missing.length > 0) throw new Error(`routes in the contracts but not mounted: ${missing.join(', ')}`);
  });
}

export const routeTable = fp(routeTablePlugin, { name: 'coffer-route-table', fastify: '5.x' });
