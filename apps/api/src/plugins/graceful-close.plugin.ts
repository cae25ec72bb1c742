import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { unavailable } from '../errors/app-error.ts';

export interface GracefulCloseOptions {
  /** Work buffered in memory that must reach the database before the process goes (the audit batcher). */
  flush: () => Promise<void>;
}

/**
 * Once closing, every response tells its client to hang up (a kept-alive connection would otherwise hold the
 * server open until the shutdown timeout), and new requests are refused with 503 so the client retries elsewhere.
 */
async function gracefulClosePlugin(app: FastifyInstance, o: GracefulCloseOptions): Promise<void> {
  let closing = false;
  app.addHook('onClose', async () => o.flush());
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onRequest', async (_request, reply) => {
    if (closing) {
      reply.header('connection', 'close');
      throw unavailable('the server is shutting down; retry on another instance', 1);
    }
  });
  app.addHook('onSend', async (_request, reply) => {
    if (closing) reply.header('connection', 'close');
  });
}

export const gracefulClose = fp(gracefulClosePlugin, { name: 'coffer-graceful-close', fastify: '5.x' });
