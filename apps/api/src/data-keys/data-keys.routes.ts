import type { FastifyInstance } from 'fastify';
import { mount } from '../http/mount.ts';
import { requestContext } from '../http/request-context.ts';
import type { DataKeyService } from './data-keys.service.ts';
import type { SystemService } from './system.service.ts';

export async function dataKeyRoutes(
  app: FastifyInstance,
  o: { keys: DataKeyService; system: SystemService },
): Promise<void> {
  mount(app, 'listDataKeys', (req) => o.keys.list(requestContext(req)));
  mount(app, 'rotateDataKey', (req) => o.keys.rotate(requestContext(req)));
  mount(app, 'systemKeys', (req) => o.system.keys(requestContext(req)));
  mount(app, 'rewrapMasterKey', (req) => o.system.rewrap(requestContext(req)));
}
