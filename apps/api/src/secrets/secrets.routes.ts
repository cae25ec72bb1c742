import type { FastifyInstance } from 'fastify';
import { mount } from '../http/mount.ts';
import { requestContext } from '../http/request-context.ts';
import type { SecretService } from './secrets.service.ts';

export async function secretRoutes(app: FastifyInstance, o: { service: SecretService }): Promise<void> {
  const { service } = o;
  mount(app, 'putSecret', async (req, reply) => {
    const { created, metadata } = await service.put(requestContext(req), req.params, req.body);
    reply.code(created ? 201 : 200);
    return metadata;
  });
  mount(app, 'getSecret', (req) => service.get(requestContext(req), req.params, req.query.version));
  mount(app, 'listSecretVersions', (req) => service.versions(requestContext(req), req.params));
  mount(app, 'listSecrets', (req) => service.list(requestContext(req), req.query));
  mount(app, 'deleteSecret', async (req) => {
    await service.remove(requestContext(req), req.params, req.query.purge === true);
    return undefined;
  });
  mount(app, 'restoreSecret', (req) => service.restore(requestContext(req), req.params));
  mount(app, 'destroySecretVersion', async (req) => {
    const { version, ...path } = req.params;
    await service.destroy(requestContext(req), path, version);
    return undefined;
  });
  mount(app, 'patchSecret', (req) => service.patch(requestContext(req), req.params, req.body));
  mount(app, 'checkSecrets', (req) => service.check(requestContext(req), req.body));
  mount(app, 'getBundle', (req) => service.bundle(requestContext(req), req.params.kind, req.params.owner));
  mount(app, 'writeBundle', (req) =>
    service.writeBundle(requestContext(req), req.params.kind, req.params.owner, req.body),
  );
}
