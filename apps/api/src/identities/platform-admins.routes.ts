import type { FastifyInstance } from 'fastify';
import { mount } from '../http/mount.ts';
import { requestContext } from '../http/request-context.ts';
import type { PlatformAdminService } from './platform-admins.service.ts';

export async function platformAdminRoutes(app: FastifyInstance, o: { service: PlatformAdminService }): Promise<void> {
  const { service } = o;
  mount(app, 'createPlatformAdmin', (req) => service.create(requestContext(req), req.body));
  mount(app, 'listPlatformAdmins', (req) => service.list(requestContext(req)));
  mount(app, 'updatePlatformAdmin', (req) =>
    service.setDisabled(requestContext(req), req.params.id, req.body.disabled),
  );
  mount(app, 'rotatePlatformAdminSecret', (req) => service.rotateSecret(requestContext(req), req.params.id));
}
