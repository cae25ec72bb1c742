import { randomUUID } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify';
import { validatorCompiler } from 'fastify-type-provider-zod';
import type { Logger } from 'pino';
import type { Config } from '../config.ts';
import { toEnvelope } from '../errors/error-handler.ts';
import { responseSerializerCompiler } from './response-serializer.ts';

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/;

export type ServerConfig = Pick<
  Config,
  'bodyLimitBytes' | 'requestTimeoutMs' | 'headersTimeoutMs' | 'tlsTerminatedUpstream' | 'tls' | 'env'
>;

/**
 * On a terminal, one line per request: Fastify's pair of lines ("incoming request" with the request's details,
 * "request completed" with the response's), pretty-printed, took about fifteen. The incoming line drops to debug and
 * the completed one says what a person watching needs. Logs that are not a terminal's (JSON) keep Fastify's lines.
 */
export class TerminalLogController extends LogController {
  override incomingRequest(request: FastifyRequest): void {
    request.log.debug('incoming request');
  }

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    const line = `${request.method} ${request.url} ${reply.statusCode} ${reply.elapsedTime.toFixed(1)} ms`;
    if (error) reply.log.error({ err: error }, line);
    else reply.log.info(line);
  }
}

/**
 * The bare Fastify instance: server, limits, request ids, proxy trust, the zod validators and the compiled response
 * serializers (checked against zod outside production); no hooks yet.
 */
export function createFastify(config: ServerConfig, logger: Logger, o: { terminal?: boolean } = {}): FastifyInstance {
  const logControllerOptions = { requestIdLogLabel: 'requestId' };
  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    bodyLimit: config.bodyLimitBytes,
    // Take the caller's request id when it is sane, so one id follows a request across services.
    genReqId: (req) => {
      const header = req.headers['x-request-id'];
      return typeof header === 'string' && REQUEST_ID.test(header) ? header : randomUUID();
    },
    logController: o.terminal
      ? new TerminalLogController(logControllerOptions)
      : new LogController(logControllerOptions),
    requestTimeout: config.requestTimeoutMs,
    // Requests that arrive while closing get our 503 envelope (plugins/graceful-close), not Fastify's own body.
    return503OnClosing: false,
    routerOptions: { maxParamLength: 512 },
    // Errors the router raises before any route (a malformed URL, an over-long parameter) get the envelope too.
    frameworkErrors: (error, request, reply) => {
      const requestId = typeof request.id === 'string' ? request.id : randomUUID();
      const message = error.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'a path segment is too long' : 'the URL is malformed';
      void (reply as unknown as FastifyReply)
        .code(400)
        .header('x-request-id', requestId)
        .send(toEnvelope('validation_failed', message, requestId));
    },
    // Behind a declared proxy, trust only the hop nearest us: the caller's address is the X-Forwarded-For entry our
    // proxy appended, never one the client wrote itself (which `true` would take, the left-most).
    trustProxy: config.tlsTerminatedUpstream ? (_addr: string, hop: number) => hop === 0 : false,
    // Our own server (native TLS when configured) so the slow-loris limits are enforced promptly: Node checks
    // header and request timeouts only every connectionsCheckingInterval (30 s by default).
    serverFactory: (handler) => {
      const options = {
        headersTimeout: config.headersTimeoutMs,
        requestTimeout: config.requestTimeoutMs,
        connectionsCheckingInterval: Math.min(1_000, config.headersTimeoutMs),
      };
      return config.tls
        ? https.createServer({ ...options, cert: config.tls.cert, key: config.tls.key }, handler)
        : http.createServer(options, handler);
    },
  }) as unknown as FastifyInstance;
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(responseSerializerCompiler({ crossCheck: config.env !== 'production' }));
  // JSON only: a text/plain body is 415, not a string handed to a schema that wants an object.
  app.removeContentTypeParser('text/plain');
  return app;
}
