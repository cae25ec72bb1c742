import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import helmet from 'helmet';

type Middleware = (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void;

/**
 * What a helmet middleware does to every response, recorded once: our options have no per-request part (no nonces,
 * no functions), so every response gets the same headers set and removed. Anything else it tried (another method
 * of the response, an asynchronous step, an error) stops the start rather than being dropped.
 */
export function headersOf(middleware: Middleware): { set: [string, string][]; removed: string[] } {
  const set = new Map<string, [string, string]>();
  const removed = new Set<string>();
  const res = {
    setHeader(name: string, value: unknown) {
      if (typeof value !== 'string') throw new Error(`security header ${name} is not a plain string`);
      removed.delete(name.toLowerCase());
      set.set(name.toLowerCase(), [name, value]);
      return res;
    },
    removeHeader(name: string) {
      set.delete(name.toLowerCase());
      removed.add(name.toLowerCase());
    },
  };
  let finished = false;
  middleware({} as IncomingMessage, res as unknown as ServerResponse, (err) => {
    if (err) throw err;
    finished = true;
  });
  if (!finished) throw new Error('the security headers middleware did not finish synchronously');
  return { set: [...set.values()], removed: [...removed] };
}

/**
 * Security headers from helmet, computed once at start: running helmet's dozen middlewares for each request set the
 * same headers every time. A JSON API: nothing may be framed, scripted or embedded from its responses (Swagger UI
 * sets its own policy on its pages).
 */
async function securityHeadersPlugin(app: FastifyInstance, o: { servedOverTls: boolean }): Promise<void> {
  const { set, removed } = headersOf(
    helmet({
      contentSecurityPolicy: {
        directives: {
          defaultSrc: ["'none'"],
          frameAncestors: ["'none'"],
          // Over plain HTTP (loopback, or behind a proxy) it would send browsers to an https:// that is not there.
          upgradeInsecureRequests: o.servedOverTls ? [] : null,
        },
      },
    }) as Middleware,
  );
  // As the reply's own headers, not the raw response's: a raw response that already holds headers makes Node set
  // each of the reply's headers one by one again when the reply is written.
  const headers = Object.fromEntries(set.map(([name, value]) => [name.toLowerCase(), value]));
  app.addHook('onRequest', (_request, reply, done) => {
    reply.headers(headers);
    for (const name of removed) reply.removeHeader(name);
    done();
  });
}

export const securityHeaders = fp(securityHeadersPlugin, { name: 'coffer-security-headers', fastify: '5.x' });
