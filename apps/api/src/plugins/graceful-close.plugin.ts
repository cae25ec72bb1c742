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
  // Callback hooks, not async ones: they run on every request, and an async hook costs a promise each time.
  app.addHook('onRequest', (_request, reply, done) => {
    if (!closing) return done();
    reply.header('connection', 'close');
    done(unavailable('the server is shutting down; retry on another instance', 1));
  });
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (closing) reply.header('connection', 'close');
    done(null, payload);
  });
}

export const gracefulClose = fp(gracefulClosePlugin, { name: 'coffer-graceful-close', fastify: '5.x' });
