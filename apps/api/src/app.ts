import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import { type RouteName, routes } from '@coffer/contracts';
import fastifyRateLimit from '@fastify/rate-limit';
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import type { Tracer } from '@opentelemetry/api';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify';
import {
  jsonSchemaTransform,
  jsonSchemaTransformObject,
  serializerCompiler,
  validatorCompiler,
} from 'fastify-type-provider-zod';
import helmet from 'helmet';
import type { Logger } from 'pino';
import { linkKeys } from './audit/audit.digest.ts';
import { type AuditJobs, auditJobs } from './audit/audit.jobs.ts';
import { auditQueries } from './audit/audit.queries.ts';
import { auditRoutes } from './audit/audit.routes.ts';
import { auditService } from './audit/audit.service.ts';
import type { AuditSink } from './audit/audit.sink.ts';
import type { AuditEvent } from './audit/audit.types.ts';
import { fileWitness } from './audit/audit.witness.ts';
import { AuditBatcher, appendInTx } from './audit/audit.writer.ts';
import { authRoutes } from './auth/auth.routes.ts';
import { authService } from './auth/auth.service.ts';
import { authenticate } from './auth/authenticate.plugin.ts';
import { LoginThrottle } from './auth/login-throttle.ts';
import { PrincipalResolver } from './auth/principals.ts';
import type { SigningKeys } from './auth/signing-keys.ts';
import type { Config } from './config.ts';
import type { MasterKeyring } from './crypto/keyring.ts';
import { TenantKeyCache } from './crypto/tenant-keys.ts';
import type { Database } from './db/database.ts';
import { migrationsCurrent } from './db/migrate.ts';
import { AppError, audited, unavailable } from './errors/app-error.ts';
import { registerErrorHandling, toEnvelope } from './errors/error-handler.ts';
import { healthRoutes } from './health/health.routes.ts';
import { OverLimitTokens } from './http/over-limit.ts';
import { identityQueries } from './identities/identities.queries.ts';
import { identityRoutes } from './identities/identities.routes.ts';
import { identityService } from './identities/identities.service.ts';
import { Scheduler } from './jobs/scheduler.ts';
import { keyQueries } from './keys/keys.queries.ts';
import { keyRoutes } from './keys/keys.routes.ts';
import { type KeyService, keyService } from './keys/keys.service.ts';
import { systemService } from './keys/system.service.ts';
import { countEvent, Metrics } from './metrics/metrics.ts';
import { ReplicaRegistry } from './ops/replicas.ts';
import { traceRequests } from './ops/tracing.ts';
import { rotationQueries } from './rotation/rotation.queries.ts';
import { rotationRoutes } from './rotation/rotation.routes.ts';
import { type RotationService, rotationService } from './rotation/rotation.service.ts';
import { type PurgeJob, purgeJob } from './secrets/purge.job.ts';
import { secretWriter } from './secrets/secret-writes.ts';
import { secretQueries } from './secrets/secrets.queries.ts';
import { secretRoutes } from './secrets/secrets.routes.ts';
import { secretService } from './secrets/secrets.service.ts';
import { tenantQueries } from './tenants/tenants.queries.ts';
import { tenantRoutes } from './tenants/tenants.routes.ts';
import { tenantService } from './tenants/tenants.service.ts';
import { webhookQueries } from './webhooks/webhooks.queries.ts';
import { webhookRoutes } from './webhooks/webhooks.routes.ts';
import { type WebhookService, webhookService } from './webhooks/webhooks.service.ts';

export interface AppDeps {
  config: Config;
  db: Database;
  keyring: MasterKeyring;
  signingKeys: SigningKeys;
  logger: Logger;
  migrationsFolder: string;
  /** Run background jobs (purging, later rotation); tests drive them by hand through `app.jobs`. */
  startJobs?: boolean;
  /** Share one registry with a separate metrics listener (main.ts); tests let the app make its own. */
  metrics?: Metrics;
  /** OpenTelemetry tracing is on: a span per request (see ops/tracing.ts). */
  tracer?: Tracer;
}

declare module 'fastify' {
  interface FastifyInstance {
    jobs: { purge: PurgeJob; audit: AuditJobs; rotation: RotationService; rekey: KeyService; webhooks: WebhookService };
    metrics: Metrics;
  }
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/;

/**
 * Assembles the Fastify instance: cross-cutting plugins first, then each capability as an encapsulated plugin
 * that builds its own service from narrow dependencies. main.ts only listens; tests inject.
 */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const { config, db, keyring, signingKeys, logger } = deps;

  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    bodyLimit: config.bodyLimitBytes,
    // Take the caller's request id when it is sane, so one id follows a request across services.
    genReqId: (req) => {
      const header = req.headers['x-request-id'];
      return typeof header === 'string' && REQUEST_ID.test(header) ? header : randomUUID();
    },
    logController: new LogController({ requestIdLogLabel: 'requestId' }),
    requestTimeout: config.requestTimeoutMs,
    // Requests that arrive while closing get our 503 envelope (onRequest below), not Fastify's own body.
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
  // First of all hooks, so that every statement of the request (authentication's too) falls inside its span.
  if (deps.tracer) traceRequests(app, deps.tracer);
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);

  const metrics = deps.metrics ?? new Metrics({ tenantLabels: config.metricsTenantLabels });
  metrics.watchPool(db.pool);
  const linkKey = linkKeys(keyring);
  const batcher = new AuditBatcher({
    pool: db.pool,
    linkKey,
    preparedStatements: config.dbPreparedStatements,
    onError: (err) => logger.error({ err }, 'audit commit failed'),
    observe: (events, seconds) => {
      metrics.auditBatchSize.observe(events);
      metrics.auditCommitSeconds.observe(seconds);
    },
  });
  // Every audit event passes here, so it is also where secret reads and writes, logins and rotations are counted.
  const count = (events: readonly AuditEvent[]) => {
    for (const e of events) countEvent(metrics, e);
  };
  const audit: AuditSink = {
    record: (e) => batcher.record(e).then(() => count([e])),
    appendInTx: async (tx, events) => {
      await appendInTx(tx, events, linkKey);
      count(events);
    },
  };
  app.addHook('onClose', async () => batcher.drain());
  app.addHook('onResponse', async (request, reply) => {
    const labels = {
      route: request.routeOptions.config?.routeName ?? (request.routeOptions.url ? 'other' : 'unmatched'),
      method: request.method,
      status: String(reply.statusCode),
    };
    metrics.httpRequests.inc(labels);
    metrics.httpDuration.observe(labels, reply.elapsedTime / 1000);
  });

  // Every route under /v1 comes from the contracts' table through mount(), which declares its action; a route
  // that does not is a build error, and so is a route of the table that nobody mounted.
  const mounted = new Set<string>();
  app.addHook('onRoute', (route) => {
    const name = route.config?.routeName;
    if (name) mounted.add(name);
    else if (route.url.startsWith('/v1')) {
      throw new Error(`${route.method} ${route.url} was not mounted from the contracts' route table`);
    }
  });
  const replicas = new ReplicaRegistry(db, { staleAfterMs: 15_000 });
  // Rate limits. Each identity gets its tenant's (or the default) requests per second across every route
  // together, checked right after authentication and before any database work of the handler; logins are limited
  // per source address. Both budgets are split between the live replicas. Refusals are not audited (a flood would
  // otherwise write the audit log on the flooder's behalf).
  app.addHook('onRoute', (route) => {
    const routeConfig = route.config as Record<string, unknown> | undefined;
    if (routeConfig?.routeName === 'issueToken') {
      routeConfig.rateLimit = {
        hook: 'onRequest',
        groupId: 'login',
        timeWindow: 60_000,
        max: async () => replicas.share(config.loginRateLimitPerMinute),
      };
    }
  });
  const rateLimited = (_req: FastifyRequest, context: { after: string; ttl: number }) =>
    audited(
      new AppError(
        'rate_limited',
        `rate limit exceeded: retry in ${context.after}`,
        undefined,
        Math.max(1, Math.ceil(context.ttl / 1000)),
      ),
    );
  await app.register(fastifyRateLimit, {
    global: false,
    onExceeded: () => metrics.rateLimited.inc({ kind: 'login' }),
    errorResponseBuilder: rateLimited,
  });
  // One counter per identity, shared by every route: a per-route limit would hand out a fresh budget per route.
  // A token refused for its identity's rate is remembered until the window ends and refused from then on before
  // any other work (see OverLimitTokens): a flood past the limit must not eat its neighbours' CPU.
  const overLimit = new OverLimitTokens();
  const identityLimit = app.rateLimit({
    timeWindow: 1000,
    keyGenerator: (req: FastifyRequest) => req.principal?.identityId ?? req.ip,
    max: async (req: FastifyRequest) => replicas.share(req.principal?.rateLimitPerSecond ?? config.rateLimitPerSecond),
    onExceeded: () => metrics.rateLimited.inc({ kind: 'identity' }),
    errorResponseBuilder: (req: FastifyRequest, context: { after: string; ttl: number; max: number }) => {
      const key = OverLimitTokens.keyOf(req.headers.authorization);
      if (key && req.principal) overLimit.add(key, context.ttl, context.max);
      return rateLimited(req, context);
    },
  });
  app.addHook('preValidation', async (request, reply) => {
    if (request.routeOptions.config?.action) await identityLimit.call(app, request, reply);
  });
  // Security headers from helmet, built once: @fastify/helmet rebuilt the middleware (and re-parsed the policy) on
  // every request, about 7 % of a secret read's CPU. A JSON API: nothing may be framed, scripted or embedded from
  // its responses (Swagger UI sets its own policy on its pages).
  const securityHeaders = helmet({
    contentSecurityPolicy: { directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
  });
  app.addHook('onRequest', (request, reply, done) =>
    securityHeaders(request.raw, reply.raw, (err?: unknown) => done(err as Error | undefined)),
  );

  app.addHook('onReady', async () => {
    const missing = (Object.keys(routes) as RouteName[]).filter((n) => !mounted.has(n));
    if (missing.length > 0) throw new Error(`routes in the contracts but not mounted: ${missing.join(', ')}`);
  });

  // Graceful shutdown: once closing, every response tells its client to hang up (a kept-alive connection would
  // otherwise hold the server open until the shutdown timeout), and new requests are refused with 503.
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
    // Secrets, credentials and tokens are never kept by a cache between us and the caller.
    reply.header('cache-control', 'no-store');
    if (closing) {
      reply.header('connection', 'close');
      throw unavailable('the server is shutting down; retry on another instance', 1);
    }
    if (request.routeOptions.config?.action) {
      const key = OverLimitTokens.keyOf(request.headers.authorization);
      const refused = key ? overLimit.check(key) : null;
      if (refused) {
        // The same refusal the limiter gives (headers, envelope, metric), without verifying the token again,
        // after a short pause that slows a client ignoring Retry-After (see OverLimitTokens).
        metrics.rateLimited.inc({ kind: 'identity' });
        await sleep(refused.pauseMs);
        const seconds = refused.retryAfterSeconds;
        reply.headers({
          'x-ratelimit-limit': refused.max,
          'x-ratelimit-remaining': 0,
          'x-ratelimit-reset': seconds,
          'retry-after': seconds,
        });
        throw rateLimited(request, { after: `${seconds} second${seconds === 1 ? '' : 's'}`, ttl: refused.ttlMs });
      }
    }
  });
  app.addHook('onSend', async (_request, reply) => {
    if (closing) reply.header('connection', 'close');
  });
  // JSON only: a text/plain body is 415, not a string handed to a schema that wants an object.
  app.removeContentTypeParser('text/plain');

  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Coffer API',
        version: '1',
        description:
          'Multi-tenant secrets service. Authenticate with POST /v1/auth/token, then send the token as a Bearer header.',
      },
      components: { securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } },
    },
    transform: jsonSchemaTransform,
    transformObject: jsonSchemaTransformObject,
  });
  await app.register(fastifySwaggerUi, { routePrefix: '/docs', staticCSP: true });

  registerErrorHandling(app, audit);

  const identities = identityQueries(db);
  const tenants = tenantQueries(db);
  const tenantKeys = new TenantKeyCache(db, keyring);
  const system = systemService({ db, keyring, audit });

  const principals = new PrincipalResolver(identities);
  const unknownClientKey = keyring.derive('coffer/unknown-client-id/v1');
  await app.register(authenticate, {
    keys: signingKeys,
    issuer: config.jwtIssuer,
    audience: config.jwtAudience,
    principals,
    // These routes' one statement re-checks the identity's revision, so they may start from a cached identity.
    cachedRoutes: new Set(['getSecret', 'getBundle']),
    audit,
  });

  await app.register(healthRoutes, {
    onFailure: (check, err) =>
      logger.warn({ check, err: { message: (err as Error).message } }, 'readiness check failed'),
    checks: [
      {
        name: 'database',
        run: async () => {
          await db.pool.query('select 1');
          return { ok: true };
        },
      },
      { name: 'migrations', run: () => migrationsCurrent(db.pool, deps.migrationsFolder) },
      {
        name: 'master-keyring',
        run: async () => {
          const problems = await system.keyringProblems();
          return problems.length === 0 ? { ok: true } : { ok: false, message: problems.join('; ') };
        },
      },
    ],
  });

  await app.register(authRoutes, {
    keys: signingKeys,
    service: authService({
      identities,
      audit,
      defaultTtlSeconds: config.tokenTtlSeconds,
      throttle: new LoginThrottle(config.loginMaxFailures, 15 * 60_000),
      fingerprint: (value) => createHmac('sha256', unknownClientKey).update(value).digest('hex').slice(0, 32),
      sign: (claims, ttlSeconds) => app.jwt.sign(claims, { expiresIn: `${ttlSeconds}s` }),
    }),
  });
  await app.register(tenantRoutes, { service: tenantService({ db, tenants, identities, keyring, audit, linkKey }) });
  await app.register(identityRoutes, { service: identityService({ db, identities, tenants, audit }) });
  const secrets = secretQueries(db);
  const recoveryMs = config.recoveryDays * 86_400_000;
  const writer = secretWriter({ secrets, keys: tenantKeys, maxValueBytes: config.maxSecretBytes, recoveryMs });
  const auditReads = auditQueries(db);
  const webhookRows = webhookQueries(db);
  const webhooks = webhookService({
    db,
    queries: webhookRows,
    keyring,
    audit,
    urlPolicy: { allowPrivate: config.webhookAllowPrivate, allowHttp: config.webhookAllowHttp },
    log: logger,
  });
  const rotation = rotationService({
    db,
    secrets,
    queries: rotationQueries(db),
    auditReads,
    keys: tenantKeys,
    writer,
    audit,
    webhooks: webhookRows,
    log: logger,
  });
  const dataKeys = keyService({
    db,
    queries: keyQueries(db),
    keyring,
    keys: tenantKeys,
    audit,
    webhooks: webhookRows,
    log: logger,
    metrics,
    dutyCycle: config.rekeyDutyCycle,
  });

  const purge = purgeJob({ db, secrets, tenants, audit, recoveryMs, log: logger });
  const witness = config.auditWitnessFile ? fileWitness(config.auditWitnessFile) : undefined;
  const auditMaintenance = auditJobs({ queries: auditReads, tenants, keyring, log: logger, witness });
  app.decorate('metrics', metrics);
  app.decorate('jobs', { purge, audit: auditMaintenance, rotation, rekey: dataKeys, webhooks });
  if (deps.startJobs) {
    const scheduler = new Scheduler(
      [
        // First, so the rate-limit share is right from the start.
        { name: 'replica-heartbeat', intervalMs: 5_000, run: () => replicas.beat() },
        { name: 'purge-deleted-secrets', intervalMs: 3_600_000, run: () => purge.runOnce() },
        { name: 'audit-checkpoints', intervalMs: 5 * 60_000, run: () => auditMaintenance.checkpointAll() },
        { name: 'audit-retention', intervalMs: 24 * 3_600_000, run: () => auditMaintenance.retainAll() },
        { name: 're-encrypt-data-keys', intervalMs: config.schedulerIntervalMs, run: () => dataKeys.rekeyAll() },
        { name: 'webhook-deliveries', intervalMs: 5_000, run: () => webhooks.deliverDue() },
        ...(config.schedulerEnabled
          ? [{ name: 'scheduled-rotations', intervalMs: config.schedulerIntervalMs, run: () => rotation.runDue() }]
          : []),
      ],
      logger,
    );
    app.addHook('onReady', async () => {
      await replicas
        .beat()
        .catch((err) => logger.warn({ err: { message: (err as Error).message } }, 'replica heartbeat failed'));
      scheduler.start(Math.min(5_000, config.schedulerIntervalMs));
    });
    app.addHook('onClose', async () => {
      await scheduler.stop();
      await replicas.leave().catch(() => undefined);
    });
  }

  await app.register(secretRoutes, {
    service: secretService({
      db,
      secrets,
      keys: tenantKeys,
      audit,
      writer,
      webhooks: webhookRows,
      refreshPrincipal: (p) => principals.refresh(p),
    }),
  });
  await app.register(rotationRoutes, { service: rotation });
  await app.register(keyRoutes, { keys: dataKeys, system });
  await app.register(webhookRoutes, { service: webhooks });
  await app.register(auditRoutes, {
    service: auditService({
      queries: auditReads,
      audit,
      keyring,
      witness,
      checkpointMaxAgeMs: config.auditCheckpointMaxAgeMs,
    }),
  });

  // Registered after the error handler, so a wrong token answers the envelope like every other route.
  if (config.metricsToken) {
    const expected = Buffer.from(`Bearer ${config.metricsToken}`);
    app.get('/metrics', { schema: { hide: true } }, async (request, reply) => {
      const given = Buffer.from(request.headers.authorization ?? '');
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
        throw new AppError('unauthorized', 'the metrics token is required');
      }
      reply.type(metrics.registry.contentType);
      return metrics.registry.metrics();
    });
  }

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  return app;
}
