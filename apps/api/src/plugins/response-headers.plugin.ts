import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';

/** Headers every response carries, errors included. */
async function responseHeadersPlugin(app: FastifyInstance): Promise<void> {
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id);
    // Secrets, credentials and tokens are never kept by a cache between us and the caller.
    reply.header('cache-control', 'no-store');
    done();
  });
}

export const responseHeaders = fp(responseHeadersPlugin, { name: 'coffer-response-headers', fastify: '5.x' });
