import type { FastifyInstance } from 'fastify';
import { mount } from '../http/mount.ts';
import { requestContext } from '../http/request-context.ts';
import type { IdentityService } from './identities.service.ts';

export async function identityRoutes(app: FastifyInstance, o: { service: IdentityService }): Promise<void> {
  const { service } = o;
  mount(app, 'createIdentity', (req) => service.create(requestContext(req), req.body));
  mount(app, 'listIdentities', (req) => service.list(requestContext(req), req.query));
  mount(app, 'getIdentity', (req) => service.get(requestContext(req), req.params.id));
  mount(app, 'updateIdentity', (req) => service.update(requestContext(req), req.params.id, req.body));
  mount(app, 'deleteIdentity', async (req) => {
    await service.remove(requestContext(req), req.params.id);
    return undefined;
  });
  mount(app, 'rotateIdentitySecret', (req) => service.rotateSecret(requestContext(req), req.params.id));
}
