import type { FastifyInstance } from 'fastify';
import { requestContext } from '../audit/audit.context.ts';
import { mount } from '../http/mount.ts';
import type { KeyService } from './keys.service.ts';
import type { SystemService } from './system.service.ts';

export async function keyRoutes(app: FastifyInstance, o: { keys: KeyService; system: SystemService }): Promise<void> {
  mount(app, 'listDataKeys', (req) => o.keys.list(requestContext(req)));
  mount(app, 'rotateDataKey', (req) => o.keys.rotate(requestContext(req)));
  mount(app, 'systemKeys', (req) => o.system.keys(requestContext(req)));
  mount(app, 'rewrapMasterKey', (req) => o.system.rewrap(requestContext(req)));
}
