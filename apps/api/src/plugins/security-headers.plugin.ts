import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import helmet from 'helmet';

/**
 * Security headers from helmet, built once: @fastify/helmet rebuilds the middleware (and re-parses the policy) on
 * every request. A JSON API: nothing may be framed, scripted or embedded from its responses (Swagger UI sets its
 * own policy on its pages).
 */
async function securityHeadersPlugin(app: FastifyInstance, o: { servedOverTls: boolean }): Promise<void> {
  const headers = helmet({
    contentSecurityPolicy: {
      directives: {
        defaultSrc: ["'none'"],
        frameAncestors: ["'none'"],
        // Over plain HTTP (loopback, or behind a proxy) it would send browsers to an https:// that is not there.
        upgradeInsecureRequests: o.servedOverTls ? [] : null,
      },
    },
  });
  app.addHook('onRequest', (request, reply, done) =>
    headers(request.raw, reply.raw, (err?: unknown) => done(err as Error | undefined)),
  );
}

export const securityHeaders = fp(securityHeadersPlugin, { name: 'coffer-security-headers', fastify: '5.x' });
