import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { mount } from '../http/mount.ts';
import { requestContext } from '../http/request-context.ts';
import type { AuditFollow } from './audit.follow.ts';
import type { AuditService } from './audit.service.ts';

export async function auditRoutes(
  app: FastifyInstance,
  o: { service: AuditService; follow: AuditFollow },
): Promise<void> {
  const { service } = o;
  // Follow sessions end when the server closes: an open stream would otherwise hold the close until its timeout.
  const sessions = new Set<AbortController>();
  app.addHook('preClose', async () => {
    for (const s of sessions) s.abort();
  });
  mount(app, 'followAudit', async (req, reply) => {
    const session = new AbortController();
    sessions.add(session);
    reply.raw.once('close', () => {
      session.abort();
      sessions.delete(session);
    });
    const lastEventId = req.headers['last-event-id'];
    const frames = await o.follow(
      requestContext(req),
      { ...req.query, lastEventId: typeof lastEventId === 'string' ? lastEventId : undefined },
      session.signal,
    );
    reply
      .type('text/event-stream; charset=utf-8')
      // A buffering proxy would hold events back until its buffer fills.
      .header('x-accel-buffering', 'no');
    return reply.send(Readable.from(frames, { objectMode: false })) as never;
  });
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
