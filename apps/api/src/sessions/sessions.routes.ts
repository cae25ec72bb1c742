import type { FastifyInstance } from 'fastify';
import { mount } from '../http/mount.ts';
import { requestContext } from '../http/request-context.ts';
import type { SessionService } from './sessions.service.ts';

export async function sessionRoutes(app: FastifyInstance, o: { service: SessionService }): Promise<void> {
  const { service } = o;
  mount(app, 'refreshSession', (req) => service.refresh(requestContext(req), req.body));
  mount(app, 'listSessions', (req) => service.list(requestContext(req), req.query));
  mount(app, 'revokeSession', async (req) => {
    await service.revoke(requestContext(req), req.params.id);
    return undefined;
  });
}
