import type { FastifyInstance } from 'fastify';
import { mount } from '../http/mount.ts';
import { requestContext } from '../http/request-context.ts';
import type { DeploymentService } from './deployments.service.ts';
import type { InventoryService } from './inventory.service.ts';

export async function deploymentRoutes(
  app: FastifyInstance,
  o: { service: DeploymentService; inventory: InventoryService },
): Promise<void> {
  const { service, inventory } = o;
  mount(app, 'inventory', (req) => inventory.list(requestContext(req), req.query));
  mount(app, 'planDeployment', (req) => service.plan(requestContext(req), req.body));
  mount(app, 'createDeployment', (req) => service.create(requestContext(req), req.body));
  mount(app, 'listDeployments', (req) => service.list(requestContext(req), req.query));
  mount(app, 'getDeployment', (req) => service.get(requestContext(req), req.params.id));
  mount(app, 'revokeDeployment', (req) => service.revoke(requestContext(req), req.params.id, req.body ?? {}));
}
