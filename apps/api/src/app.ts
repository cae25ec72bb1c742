import type { FastifyInstance } from 'fastify';
import { auditRoutes } from './audit/audit.routes.ts';
import { authRoutes } from './auth/auth.routes.ts';
import { authenticate } from './auth/authenticate.plugin.ts';
import { type AppDeps, composeServices } from './composition.ts';
import { dataKeyRoutes } from './data-keys/data-keys.routes.ts';
import { deploymentRoutes } from './deployments/deployments.routes.ts';
import { dynamicRoutes } from './dynamic/dynamic.routes.ts';
import { environmentRoutes } from './environments/environments.routes.ts';
import { registerErrorHandling } from './errors/error-handler.ts';
import { healthRoutes } from './health/health.routes.ts';
import { createFastify } from './http/fastify-instance.ts';
import { identityRoutes } from './identities/identities.routes.ts';
import { platformAdminRoutes } from './identities/platform-admins.routes.ts';
import { intakeRoutes } from './intake/intake.routes.ts';
import type { JobHandles } from './jobs/background-jobs.ts';
import { jobs } from './jobs/jobs.plugin.ts';
import type { Metrics } from './metrics/metrics.ts';
import { gracefulClose } from './plugins/graceful-close.plugin.ts';
import { httpMetrics } from './plugins/http-metrics.plugin.ts';
import { metricsEndpoint } from './plugins/metrics-endpoint.plugin.ts';
import { openApi, openApiDocument } from './plugins/openapi.plugin.ts';
import { rateLimits } from './plugins/rate-limits.plugin.ts';
import { responseHeaders } from './plugins/response-headers.plugin.ts';
import { routeTable } from './plugins/route-table.plugin.ts';
import { securityHeaders } from './plugins/security-headers.plugin.ts';
import { tracing } from './plugins/tracing.plugin.ts';
import { rotationRoutes } from './rotation/rotation.routes.ts';
import { secretRoutes } from './secrets/secrets.routes.ts';
import { sessionRoutes } from './sessions/sessions.routes.ts';
import { tenantRoutes } from './tenants/tenants.routes.ts';
import { trustRoutes } from './trust/trust.routes.ts';
import { webhookRoutes } from './webhooks/webhooks.routes.ts';

export type { AppDeps } from './composition.ts';

declare module 'fastify' {
  interface FastifyInstance {
    jobs: JobHandles;
    metrics: Metrics;
  }
}

/** The table of contents: what the app is made of, in the order it is assembled. main.ts only listens. */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const { config, signingKeys: keys, logger: log } = deps;
  const app = createFastify(config, log, { terminal: deps.terminalLog === true });
  const sign = (claims: Record<string, unknown>, ttl: number) => app.jwt.sign(claims, { expiresIn: `${ttl}s` });
  const s = composeServices({ ...deps, sign, listening: () => app.server.address() });

  // The order of the request hooks carries security, each running before the next:
  // 1. tracing (so every statement, authentication's too, is inside the request's span), 2. security headers,
  // 3. the over-limit fast path (a token over its rate is refused before its signature is checked again),
  // 4. authentication (the route's onRequest), 5. the identity's rate limit (preValidation, once it is known).
  await app.register(tracing, { tracer: deps.tracer });
  await app.register(httpMetrics, { metrics: s.metrics });
  const servedOverTls = config.tls !== null;
  await app.register(securityHeaders, { servedOverTls });
  await app.register(responseHeaders);
  await app.register(gracefulClose, { flush: s.flushAudit });
  const { rateLimitPerSecond: perSecond, loginRateLimitPerMinute: loginPerMinute } = config;
  await app.register(rateLimits, { metrics: s.metrics, replicas: s.replicas, perSecond, loginPerMinute });
  await app.register(openApi, { servedOverTls });
  registerErrorHandling(app, s.audit);
  const { jwtIssuer: issuer, jwtAudience: audience } = config;
  await app.register(authenticate, { keys, issuer, audience, ...s.authentication });
  await app.register(routeTable);

  // Capability modules, each mounting its routes from the contracts' table.
  await app.register(healthRoutes, s.readiness);
  await app.register(authRoutes, { keys, service: s.auth });
  await app.register(sessionRoutes, { service: s.sessions });
  await app.register(tenantRoutes, { service: s.tenants });
  await app.register(identityRoutes, { service: s.identities });
  await app.register(platformAdminRoutes, { service: s.platformAdmins });
  await app.register(jobs, { handles: s.jobs, replicas: s.replicas, config, log, start: deps.startJobs === true });
  await app.register(secretRoutes, { service: s.secrets });
  await app.register(rotationRoutes, { service: s.rotation, revocation: s.revocation });
  await app.register(dataKeyRoutes, { keys: s.dataKeys, system: s.system });
  await app.register(webhookRoutes, { service: s.webhooks });
  await app.register(auditRoutes, { service: s.auditService, follow: s.auditFollow });
  await app.register(trustRoutes, { service: s.trust });
  await app.register(environmentRoutes, { service: s.environments });
  await app.register(intakeRoutes, { service: s.intake });
  await app.register(deploymentRoutes, { service: s.deployments, inventory: s.inventory });
  await app.register(dynamicRoutes, { backends: s.backends, leases: s.leases });

  await app.register(metricsEndpoint, { metrics: s.metrics, token: config.metricsToken });
  await app.register(openApiDocument);
  return app;
}
