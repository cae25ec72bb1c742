import type { FastifyInstance } from 'fastify';
import { mount } from '../http/mount.ts';
import { requestContext } from '../http/request-context.ts';
import type { BackendService } from './backends.service.ts';
import type { LeaseService } from './leases.service.ts';

export async function dynamicRoutes(
  app: FastifyInstance,
  o: { backends: BackendService; leases: LeaseService },
): Promise<void> {
  const { backends, leases } = o;
  mount(app, 'createPostgresBackend', (req) => backends.create(requestContext(req), req.body));
  mount(app, 'listPostgresBackends', (req) => backends.list(requestContext(req)));
  mount(app, 'getPostgresBackend', (req) => backends.get(requestContext(req), req.params.name));
  mount(app, 'deletePostgresBackend', async (req) => {
    await backends.remove(requestContext(req), req.params.name);
    return undefined;
  });
  mount(app, 'createLease', (req) => leases.create(requestContext(req), req.params.name, req.body));
  mount(app, 'listLeases', (req) => leases.list(requestContext(req), req.query));
  mount(app, 'getLease', (req) => leases.get(requestContext(req), req.params.id));
  mount(app, 'renewLease', (req) => leases.renew(requestContext(req), req.params.id, req.body));
  mount(app, 'revokeLease', async (req, reply) => {
    const { status, lease } = await leases.revoke(requestContext(req), req.params.id);
    reply.code(status);
    return lease;
  });
  mount(app, 'revokeLeases', (req) => leases.revokeMany(requestContext(req), req.query));
  // Roles being dropped finish, and the connections to the backends' databases close, before the app's pool does.
  app.addHook('onClose', () => leases.close());
}
