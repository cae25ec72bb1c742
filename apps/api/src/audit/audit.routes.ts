import type { FastifyInstance } from 'fastify';
import { mount } from '../http/mount.ts';
import { requestContext } from '../http/request-context.ts';
import type { AuditService } from './audit.service.ts';

export async function auditRoutes(app: FastifyInstance, o: { service: AuditService }): Promise<void> {
  const { service } = o;
  mount(app, 'queryAudit', (req) => service.query(requestContext(req), req.query));
  mount(app, 'exportAudit', async (req, reply) => {
    const stream = await service.export(requestContext(req), req.query);
    const csv = req.query.format === 'csv';
    reply
      .type(csv ? 'text/csv; charset=utf-8' : 'application/x-ndjson; charset=utf-8')
      .header('content-disposition', `attachment; filename="coffer-audit.${csv ? 'csv' : 'ndjson'}"`);
    return reply.send(stream) as never;
  });
  mount(app, 'verifyAudit', (req) => service.verify(requestContext(req), req.query));
  mount(app, 'auditSummary', (req) => service.summary(requestContext(req), req.query));
}
