import type { FastifyInstance } from 'fastify';
import { mount } from '../http/mount.ts';
import { requestContext } from '../http/request-context.ts';
import type { IntakeService } from './intake.service.ts';

export async function intakeRoutes(app: FastifyInstance, o: { service: IntakeService }): Promise<void> {
  const { service } = o;
  mount(app, 'createIntake', (req) => {
    const { path, env, format, expiresIn, prompt } = req.body;
    return service.createIntake(requestContext(req), { path, env, format, expiresInSeconds: expiresIn, prompt });
  });
  mount(app, 'listIntakes', (req) => service.list(requestContext(req), req.query));
  mount(app, 'revokeIntake', (req) => service.revoke(requestContext(req), req.params.id));
  mount(app, 'getIntake', (req) => service.view(requestContext(req), req.params.token));
  mount(app, 'submitIntake', (req) => service.submit(requestContext(req), req.params.token, req.body.value));
}
