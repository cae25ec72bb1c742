import type { FastifyInstance } from 'fastify';
import { mount } from '../http/mount.ts';
import { requestContext } from '../http/request-context.ts';
import type { TenantService } from './tenants.service.ts';

export async function tenantRoutes(app: FastifyInstance, o: { service: TenantService }): Promise<void> {
  mount(app, 'createTenant', (req) => o.service.create(requestContext(req), req.body));
  mount(app, 'listTenants', (req) => o.service.list(requestContext(req), req.query));
  mount(app, 'getTenant', (req) => o.service.get(requestContext(req), req.params.id));
  mount(app, 'setAuditRetention', (req) =>
    o.service.setAuditRetention(requestContext(req), req.params.id, req.body.days),
  );
  mount(app, 'updateTenant', (req) => o.service.update(requestContext(req), req.params.id, req.body));
}
