import type { FastifyInstance } from 'fastify';
import { mount } from '../http/mount.ts';
import { requestContext } from '../http/request-context.ts';
import type { WebhookService } from './webhooks.service.ts';

export async function webhookRoutes(app: FastifyInstance, o: { service: WebhookService }): Promise<void> {
  const { service } = o;
  mount(app, 'createWebhook', (req) => service.create(requestContext(req), req.body));
  mount(app, 'listWebhooks', (req) => service.list(requestContext(req)));
  mount(app, 'deleteWebhook', async (req) => {
    await service.remove(requestContext(req), req.params.id);
    return undefined;
  });
  mount(app, 'webhookDeliveries', (req) => service.deliveries(requestContext(req), req.params.id));
}
