import type { FastifyInstance } from 'fastify';
import { mount } from '../http/mount.ts';
import { requestContext } from '../http/request-context.ts';
import { secretPath } from '../secrets/secrets.routes.ts';
import type { RevocationService } from './revocation.service.ts';
import type { RotationService } from './rotation.service.ts';

export async function rotationRoutes(
  app: FastifyInstance,
  o: { service: RotationService; revocation: RevocationService },
): Promise<void> {
  const { service, revocation } = o;
  mount(app, 'rotateSecret', (req) =>
    service.rotate(requestContext(req), secretPath(req.params, req.query), req.body ?? {}),
  );
  mount(app, 'rotationDue', (req) => service.due(requestContext(req), req.query));
  mount(app, 'rotationLog', (req) => service.log(requestContext(req), req.query));
  mount(app, 'secretConsumers', (req) =>
    revocation.consumers(requestContext(req), secretPath(req.params, req.query), req.query.within),
  );
  mount(app, 'rotationStatus', (req) => revocation.status(requestContext(req), secretPath(req.params, req.query)));
  mount(app, 'revokeSecretVersion', (req) =>
    revocation.revoke(requestContext(req), secretPath(req.params, req.query), req.params.version, req.body ?? {}),
  );
}
