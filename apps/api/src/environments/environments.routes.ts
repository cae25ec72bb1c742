import type { FastifyInstance } from 'fastify';
import { mount } from '../http/mount.ts';
import { requestContext } from '../http/request-context.ts';
import type { EnvironmentService } from './environments.service.ts';

export async function environmentRoutes(app: FastifyInstance, o: { service: EnvironmentService }): Promise<void> {
  const { service } = o;
  mount(app, 'listEnvironments', (req) => service.list(requestContext(req)));
  mount(app, 'createEnvironment', (req) => service.create(requestContext(req), req.body));
  mount(app, 'updateEnvironment', (req) => service.update(requestContext(req), req.params.slug, req.body));
  mount(app, 'deleteEnvironment', async (req) => {
    await service.remove(requestContext(req), req.params.slug);
    return undefined;
  });
  mount(app, 'diffEnvironments', (req) => service.diff(requestContext(req), req.query));
  mount(app, 'promoteEnvironment', (req) => service.promote(requestContext(req), req.body));
}
