import { DEFAULT_ENVIRONMENT, type SecretKind } from '@coffer/contracts';
import type { FastifyInstance } from 'fastify';
import { mount } from '../http/mount.ts';
import { requestContext } from '../http/request-context.ts';
import type { SecretPath } from './secrets.queries.ts';
import type { SecretService } from './secrets.service.ts';

/** A secret's full path: the route's kind/owner/name and `?env` (the tenant's default when absent). */
export function secretPath<P extends { kind: SecretKind; owner: string; name: string }>(
  params: P,
  query: { env?: string | undefined },
): SecretPath {
  return { environment: query.env ?? DEFAULT_ENVIRONMENT, kind: params.kind, owner: params.owner, name: params.name };
}

export async function secretRoutes(app: FastifyInstance, o: { service: SecretService }): Promise<void> {
  const { service } = o;
  mount(app, 'putSecret', async (req, reply) => {
    const { created, metadata } = await service.put(requestContext(req), secretPath(req.params, req.query), req.body);
    reply.code(created ? 201 : 200);
    return metadata;
  });
  mount(app, 'getSecret', (req) =>
    service.get(requestContext(req), secretPath(req.params, req.query), req.query.version),
  );
  mount(app, 'listSecretVersions', (req) => service.versions(requestContext(req), secretPath(req.params, req.query)));
  mount(app, 'listSecrets', (req) => service.list(requestContext(req), req.query));
  mount(app, 'deleteSecret', async (req) => {
    await service.remove(requestContext(req), secretPath(req.params, req.query), req.query.purge === true);
    return undefined;
  });
  mount(app, 'restoreSecret', (req) => service.restore(requestContext(req), secretPath(req.params, req.query)));
  mount(app, 'destroySecretVersion', async (req) => {
    await service.destroy(requestContext(req), secretPath(req.params, req.query), req.params.version);
    return undefined;
  });
  mount(app, 'patchSecret', (req) => service.patch(requestContext(req), secretPath(req.params, req.query), req.body));
  mount(app, 'checkSecrets', (req) =>
    service.check(requestContext(req), req.query.env ?? DEFAULT_ENVIRONMENT, req.body),
  );
  mount(app, 'getBundle', (req) =>
    service.bundle(
      requestContext(req),
      req.query.env ?? DEFAULT_ENVIRONMENT,
      req.params.kind,
      req.params.owner,
      req.query.deployment,
    ),
  );
  mount(app, 'writeBundle', (req) =>
    service.writeBundle(
      requestContext(req),
      req.query.env ?? DEFAULT_ENVIRONMENT,
      req.params.kind,
      req.params.owner,
      req.body,
    ),
  );
}
