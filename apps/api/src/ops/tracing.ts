import {
  type Context,
  context,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  BatchSpanProcessor,
  NodeTracerProvider,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
} from '@opentelemetry/sdk-trace-node';
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';
import type pg from 'pg';

export interface TracingOptions {
  /** OTLP/HTTP traces endpoint, e.g. http://otel-collector:4318/v1/traces. */
  endpoint: string;
  serviceName: string;
  /** Share of new traces kept; a caller's W3C `traceparent` decides for its own requests. */
  sampleRatio: number;
}

/**
 * Optional OpenTelemetry tracing (off unless COFFER_OTEL_TRACES_ENDPOINT is set): one server span per request,
 * named by its route pattern, and one client span per SQL statement inside it, named by the statement (its
 * prepared name, or verb and table). Spans never carry a value: no concrete path, no SQL text, no bind parameter,
 * no error message (only the SQLSTATE), no header but the trace context.
 */
export class Tracing {
  private constructor(
    private readonly provider: NodeTracerProvider,
    readonly tracer: Tracer,
  ) {}

  static start(o: TracingOptions): Tracing {
    const provider = new NodeTracerProvider({
      resource: resourceFromAttributes({ 'service.name': o.serviceName }),
      sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(o.sampleRatio) }),
      spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: o.endpoint }))],
    });
    // The global provider, an AsyncLocalStorage context manager and the W3C trace-context propagator.
    provider.register();
    return new Tracing(provider, provider.getTracer('coffer'));
  }

  /** Sends what is buffered and stops; called last on shutdown. */
  shutdown(): Promise<void> {
    return this.provider.shutdown();
  }
}

const IDENT = '"?([a-z_][a-z0-9_]*)"?';
const SCHEMA = '(?:"?[a-z_][a-z0-9_]*"?\\.)?';
const TABLE = new RegExp(`\\b(?:from|into|update|join)\\s+${SCHEMA}${IDENT}`, 'i');
/** `select f(…)` or `select a, b from f(…)`: the function is the statement (Coffer's hot paths are SQL functions). */
const CALL = new RegExp(`^(?:select|call)\\s+(?:[\\w\\s,*"]+?\\s+from\\s+)?${SCHEMA}${IDENT}\\s*\\(`, 'i');
const NOT_A_STATEMENT = /^(count|coalesce|max|min|sum|now|exists)$/i;

/** A span name for a statement that says what it is without saying what it carries. */
export function statementName(q: unknown): string {
  const cfg = typeof q === 'string' ? { text: q } : ((q ?? {}) as { name?: unknown; text?: unknown });
  if (typeof cfg.name === 'string' && cfg.name) return cfg.name;
  const text = typeof cfg.text === 'string' ? cfg.text.trimStart() : '';
  const verb = /^[a-z]+/i.exec(text)?.[0]?.toLowerCase() ?? 'query';
  const call = CALL.exec(text)?.[1];
  const target = call && !NOT_A_STATEMENT.test(call) ? call : TABLE.exec(text)?.[1];
  return target ? `${verb} ${target.toLowerCase()}` : verb;
}

const SQL_ATTRIBUTES = { 'db.system.name': 'postgresql' };

function sqlSpan(tracer: Tracer, q: unknown, parent: Context): Span {
  const name = statementName(q);
  return tracer.startSpan(
    name,
    {
      kind: SpanKind.CLIENT,
      attributes: { ...SQL_ATTRIBUTES, 'db.operation.name': name.split(' ')[0] ?? 'query', 'db.query.summary': name },
    },
    parent,
  );
}

function endSql(span: Span, err: unknown): void {
  if (err) {
    const code = (err as { code?: unknown }).code;
    span.setAttribute('error.type', typeof code === 'string' ? code : 'error');
    span.setStatus({ code: SpanStatusCode.ERROR });
  }
  span.end();
}

type QueryFn = (...args: unknown[]) => unknown;

/** Runs a query function under a span, whether it answers by callback or by promise. */
function traced(tracer: Tracer, original: QueryFn, self: unknown, args: unknown[]): unknown {
  const parent = context.active();
  // Statements outside a traced request (background jobs) would each be a trace of their own: noise.
  if (!trace.getSpan(parent)) return original.apply(self, args);
  const span = sqlSpan(tracer, args[0], parent);
  const cb = args.findIndex((a) => typeof a === 'function');
  if (cb >= 0) {
    const given = args[cb] as (err: unknown, res: unknown) => void;
    args[cb] = (err: unknown, res: unknown) => {
      endSql(span, err);
      given(err, res);
    };
    return original.apply(self, args);
  }
  const result = original.apply(self, args);
  if (result && typeof (result as Promise<unknown>).then === 'function') {
    (result as Promise<unknown>).then(
      () => endSql(span, undefined),
      (err) => endSql(span, err),
    );
  } else {
    span.end();
  }
  return result;
}

/**
 * Times every statement of the pool: `pool.query` where it is called (a client handed out later may run it in
 * another request's async context), and queries on checked-out clients (transactions).
 */
export function traceQueries(pool: pg.Pool, tracer: Tracer): void {
  const viaPool = new WeakSet<object>();
  const poolQuery = pool.query as unknown as QueryFn;
  (pool as unknown as { query: QueryFn }).query = function (this: unknown, ...args: unknown[]) {
    const [first, second, third] = args;
    if (first && typeof first === 'object' && typeof (first as { submit?: unknown }).submit === 'function') {
      return poolQuery.apply(this, args);
    }
    // One config object, so the client-level wrapper below recognises the statement and does not time it twice.
    const cfg = typeof first === 'string' ? { text: first, values: Array.isArray(second) ? second : undefined } : first;
    if (cfg && typeof cfg === 'object') viaPool.add(cfg);
    const callback = [second, third].find((a) => typeof a === 'function');
    return traced(tracer, poolQuery, this, callback ? [cfg, callback] : [cfg]);
  };
  pool.on('connect', (client) => {
    const clientQuery = client.query as unknown as QueryFn;
    (client as unknown as { query: QueryFn }).query = function (this: unknown, ...args: unknown[]) {
      const first = args[0];
      if (first && typeof first === 'object') {
        if (viaPool.has(first) || typeof (first as { submit?: unknown }).submit === 'function') {
          return clientQuery.apply(this, args);
        }
      }
      return traced(tracer, clientQuery, this, args);
    };
  });
}

/**
 * A server span per request, parented on the caller's W3C trace context, active through every hook and the
 * handler. Registered before any other hook so authentication's statements fall inside it.
 */
export function traceRequests(app: FastifyInstance, tracer: Tracer): void {
  const contexts = new WeakMap<FastifyRequest, Context>();
  app.addHook('onRequest', (request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction) => {
    const parent = propagation.extract(ROOT_CONTEXT, request.headers);
    const route = request.routeOptions.url ?? 'unmatched';
    const span = tracer.startSpan(
      `${request.method} ${route}`,
      {
        kind: SpanKind.SERVER,
        attributes: { 'http.request.method': request.method, 'http.route': route, 'coffer.request_id': request.id },
      },
      parent,
    );
    const ctx = trace.setSpan(parent, span);
    contexts.set(request, ctx);
    context.with(ctx, done);
  });
  // Body parsing and some hooks resume from socket events, outside the request's async context: re-enter it.
  const reenter = (request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction) => {
    const ctx = contexts.get(request);
    if (ctx) context.with(ctx, done);
    else done();
  };
  app.addHook('preValidation', reenter);
  app.addHook('preHandler', reenter);
  const end = (request: FastifyRequest, status: number | undefined) => {
    const ctx = contexts.get(request);
    contexts.delete(request);
    const span = ctx && trace.getSpan(ctx);
    if (!span) return;
    if (status !== undefined) span.setAttribute('http.response.status_code', status);
    if (status === undefined || status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
    span.end();
  };
  app.addHook('onResponse', (request, reply, done) => {
    end(request, reply.statusCode);
    done();
  });
  app.addHook('onRequestAbort', (request, done) => {
    end(request, undefined);
    done();
  });
}
