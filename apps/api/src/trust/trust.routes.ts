import type { FastifyInstance } from 'fastify';
import { mount } from '../http/mount.ts';
import { requestContext } from '../http/request-context.ts';
import type { TrustService } from './trust.service.ts';

export async function trustRoutes(app: FastifyInstance, o: { service: TrustService }): Promise<void> {
  const { service } = o;
  mount(app, 'createIssuer', (req) => service.create(requestContext(req), req.body));
  mount(app, 'listIssuers', (req) => service.list(requestContext(req)));
  mount(app, 'getIssuer', (req) => service.get(requestContext(req), req.params.id));
  mount(app, 'updateIssuer', (req) => service.update(requestContext(req), req.params.id, req.body));
  mount(app, 'deleteIssuer', async (req) => {
    await service.remove(requestContext(req), req.params.id);
    return undefined;
  });
}
