import { createHmac } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Tracer } from '@opentelemetry/api';
import type { Logger } from 'pino';
import { linkKeys } from './audit/audit.digest.ts';
import { auditFollower } from './audit/audit.follow.ts';
import { auditJobs } from './audit/audit.jobs.ts';
import { auditQueries } from './audit/audit.queries.ts';
import { auditService } from './audit/audit.service.ts';
import type { AuditSink } from './audit/audit.sink.ts';
import type { AuditEvent } from './audit/audit.types.ts';
import { fileWitness } from './audit/audit.witness.ts';
import { AuditBatcher, appendInTx } from './audit/audit.writer.ts';
import { authService } from './auth/auth.service.ts';
import { LoginThrottle } from './auth/login-throttle.ts';
import { PrincipalResolver } from './auth/principals.ts';
import type { SigningKeys } from './auth/signing-keys.ts';
import type { Config } from './config.ts';
import type { MasterKeyring } from './crypto/keyring.ts';
import { RowMacs } from './crypto/row-macs.ts';
import { TenantKeyCache } from './crypto/tenant-key-cache.ts';
import { dataKeyQueries } from './data-keys/data-keys.queries.ts';
import { dataKeyService } from './data-keys/data-keys.service.ts';
import { systemService } from './data-keys/system.service.ts';
import type { Database } from './db/database.ts';
import { migrationsCurrent } from './db/migrate.ts';
import { deploymentQueries } from './deployments/deployments.queries.ts';
import { deploymentService } from './deployments/deployments.service.ts';
import { inventoryQueries, inventoryService } from './deployments/inventory.service.ts';
import { backendService } from './dynamic/backends.service.ts';
import { dynamicQueries } from './dynamic/dynamic.queries.ts';
import { leaseService } from './dynamic/leases.service.ts';
import { leaseRevoker } from './dynamic/revocation.ts';
import { dynamicSeals } from './dynamic/seal.ts';
import { TargetConnections } from './dynamic/target.ts';
import { environmentQueries } from './environments/environments.queries.ts';
import { environmentService } from './environments/environments.service.ts';
import type { ReadinessCheck } from './health/health.routes.ts';
import { CURSOR_KEY_PURPOSE, cursorCodec } from './http/cursor.ts';
import { identityQueries } from './identities/identities.queries.ts';
import { identityService } from './identities/identities.service.ts';
import { platformAdminService } from './identities/platform-admins.service.ts';
import { intakeQueries } from './intake/intake.queries.ts';
import { intakeService } from './intake/intake.service.ts';
import type { JobHandles } from './jobs/background-jobs.ts';
import { ReplicaRegistry } from './jobs/replica-registry.ts';
import { countEvent, Metrics } from './metrics/metrics.ts';
import { consumerQueries } from './rotation/consumers.queries.ts';
import { revocationService } from './rotation/revocation.service.ts';
import { rotationQueries } from './rotation/rotation.queries.ts';
import { rotationService } from './rotation/rotation.service.ts';
import { purgeJob } from './secrets/purge.job.ts';
import { ROW_LOCK_WAIT_MS, statementWrites } from './secrets/secret-write-statement.ts';
import { secretWriter } from './secrets/secret-writes.ts';
import { secretQueries } from './secrets/secrets.queries.ts';
import { secretService } from './secrets/secrets.service.ts';
import { SecretWriteBatcher } from './secrets/write-batcher.ts';
import { WriteLanes } from './secrets/write-lanes.ts';
import { sessionQueries } from './sessions/sessions.queries.ts';
import { sessionService } from './sessions/sessions.service.ts';
import { tenantQueries } from './tenants/tenants.queries.ts';
import { tenantService } from './tenants/tenants.service.ts';
import { JwksResolver } from './trust/jwks.ts';
import { trustQueries } from './trust/trust.queries.ts';
import { trustService } from './trust/trust.service.ts';
import { webhookQueries } from './webhooks/webhooks.queries.ts';
import { webhookService } from './webhooks/webhooks.service.ts';

/** What the app is built from: server.ts makes these from the config, tests from the test database. */
export interface AppDeps {
  config: Config;
  db: Database;
  keyring: MasterKeyring;
  signingKeys: SigningKeys;
  logger: Logger;
  migrationsFolder: string;
  /** Run background jobs; tests drive them by hand through `app.jobs`. */
  startJobs?: boolean;
  /** Share one registry with a separate metrics listener (server.ts); tests let the app make its own. */
  metrics?: Metrics;
  /** OpenTelemetry tracing is on: a span per request (see ops/tracing.ts). */
  tracer?: Tracer;
  /** The log goes to a person's terminal (pretty-printed): one line per request. */
  terminalLog?: boolean;
}

export interface CompositionDeps extends Pick<AppDeps, 'config' | 'db' | 'keyring' | 'logger' | 'migrationsFolder'> {
  metrics?: Metrics | undefined;
  /** Signs a token; bound late, since the signer is registered on the app after the services are built. */
  sign: (claims: Record<string, unknown>, ttlSeconds: number) => string;
  /** Where the server listens once it does (null before, and for apps that are only injected into). */
  listening?: () => string | AddressInfo | null;
}

/**
 * The composition root: every query set, service and job built once from its narrow dependencies. Nothing here
 * knows Fastify; app.ts hands the results to the plugins and capability modules.
 */
export function composeServices(deps: CompositionDeps) {
  const { config, db, keyring, logger: log } = deps;

  const metrics = deps.metrics ?? new Metrics({ tenantLabels: config.metricsTenantLabels });
  metrics.watchPool(db.pool);
  // Each tenant's chain is keyed under a key derived from the master key, handed to the database with each append.
  const linkKey = linkKeys(keyring);
  const batcher = new AuditBatcher({
    pool: db.pool,
    linkKey,
    onError: (err) => log.error({ err }, 'audit commit failed'),
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
    appended: count,
  };

  const macs = new RowMacs(keyring);
  const identities = identityQueries(db, macs);
  const tenants = tenantQueries(db);
  const secrets = secretQueries(db, macs, {
    linkKey,
    observeReads: (reads) => metrics.secretReadBatchSize.observe(reads),
  });
  const environmentRows = environmentQueries(db);
  const auditReads = auditQueries(db);
  const webhookOutbox = webhookQueries(db);
  const tenantKeys = new TenantKeyCache(db, keyring);
  const sessionRows = sessionQueries(db);
  const principals = new PrincipalResolver(identities, {
    sessionActive: (tenantId, id) => sessionRows.isActive(tenantId, id),
  });
  const sessions = sessionService({
    db,
    sessions: sessionRows,
    identities,
    audit,
    sign: deps.sign,
    maxAgeSeconds: config.sessionMaxAgeSeconds,
    defaultTtlSeconds: config.tokenTtlSeconds,
  });
  const replicas = new ReplicaRegistry(db, { staleAfterMs: 15_000 });
  const recoveryMs = config.recoveryDays * 86_400_000;
  const witness = config.auditWitnessFile ? fileWitness(config.auditWitnessFile) : undefined;
  const unknownClientKey = keyring.derive('coffer/unknown-client-id/v1');

  const system = systemService({ db, keyring, audit });
  const cursors = cursorCodec(keyring.derive(CURSOR_KEY_PURPOSE));
  const issuers = trustQueries(db, macs);
  const trust = trustService({
    db,
    queries: issuers,
    macs,
    audit,
    // Signing keys are fetched under the same outbound address policy as webhook deliveries.
    jwks: new JwksResolver({
      urlPolicy: { allowPrivate: config.webhookAllowPrivate, allowHttp: config.webhookAllowHttp },
    }),
  });
  const writer = secretWriter({ secrets, keys: tenantKeys, maxValueBytes: config.maxSecretBytes, recoveryMs });
  // PUTs and bundle writes: one statement each, a tenant's concurrent ones group-committed in one.
  const writeBatcher = new SecretWriteBatcher({
    send: (tenantId, calls, values, dekHex) =>
      secrets.writeSecrets(tenantId, calls, values, dekHex, linkKey(tenantId), ROW_LOCK_WAIT_MS),
    observe: (calls) => metrics.secretWriteBatchSize.observe(calls),
  });
  const statements = statementWrites({
    secrets,
    keys: tenantKeys,
    writer,
    batcher: writeBatcher,
    lanes: new WriteLanes(),
    refreshPrincipal: (p) => principals.refresh(p),
    committed: count,
    lockTimeoutMs: config.dbLockTimeoutMs,
  });
  const webhooks = webhookService({
    db,
    queries: webhookOutbox,
    keyring,
    audit,
    urlPolicy: { allowPrivate: config.webhookAllowPrivate, allowHttp: config.webhookAllowHttp },
    log,
  });
  const rotation = rotationService({
    db,
    secrets,
    queries: rotationQueries(db),
    auditReads,
    keys: tenantKeys,
    writer,
    audit,
    webhooks: webhookOutbox,
    cursors,
    log,
    environments: environmentRows,
  });
  const intake = intakeService({
    db,
    queries: intakeQueries(db),
    secrets,
    keys: tenantKeys,
    writer,
    audit,
    webhooks: webhookOutbox,
    environments: environmentRows,
    publicUrl: () => publicUrlOf(config, deps.listening?.() ?? null),
  });
  const deploymentRows = deploymentQueries(db, macs);
  // Dynamic credentials reach the tenants' databases under an address policy of their own: a database is usually
  // inside the network, which a webhook receiver is not.
  const dynamic = {
    db,
    queries: dynamicQueries(db),
    secrets,
    macs,
    targets: new TargetConnections({
      allowPrivate: config.dynamicAllowPrivate,
      allowPlaintext: config.dynamicAllowPlaintext,
    }),
    keys: tenantKeys,
    audit,
    webhooks: webhookOutbox,
    seals: dynamicSeals(tenantKeys),
    log,
    claimMs: config.leaseClaimSeconds * 1000,
  };
  const revoker = leaseRevoker(dynamic);
  const leases = leaseService({ ...dynamic, revoker, deployments: deploymentRows });
  const deployments = deploymentService({
    db,
    queries: deploymentRows,
    secrets,
    keys: tenantKeys,
    writer,
    audit,
    webhooks: webhookOutbox,
    environments: environmentRows,
    cursors,
    rotation,
    intake,
    leases,
    macs,
  });
  const revocation = revocationService({
    db,
    secrets,
    consumers: consumerQueries(db),
    holders: deployments.holders,
    macs,
    audit,
    webhooks: webhookOutbox,
    environments: environmentRows,
  });
  const dataKeys = dataKeyService({
    db,
    queries: dataKeyQueries(db),
    keyring,
    keys: tenantKeys,
    audit,
    webhookOutbox,
    log,
    metrics,
    dutyCycle: config.rekeyDutyCycle,
  });
  const jobs: JobHandles = {
    purge: purgeJob({ db, secrets, tenants, audit, recoveryMs, log }),
    audit: auditJobs({ queries: auditReads, tenants, keyring, log, witness }),
    rotation,
    rekey: dataKeys,
    webhooks,
    leases: revoker,
  };

  let reportedOrphans = '';
  const checks: ReadinessCheck[] = [
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
        const problems = await system.readinessProblems();
        // Reported, never a reason to refuse traffic: the app role can write such rows (see readinessProblems).
        const orphans = (await system.orphanKeyIds()).join(', ');
        if (orphans && orphans !== reportedOrphans)
          log.warn({ masterKeyIds: orphans }, 'keys in use are missing from the keyring');
        reportedOrphans = orphans;
        return problems.length === 0 ? { ok: true } : { ok: false, message: problems.join('; ') };
      },
    },
  ];

  return {
    metrics,
    audit,
    /** Resolves once every recorded audit event has committed; unwrapped data keys are zeroed then, not left to GC. */
    flushAudit: async () => {
      await batcher.drain();
      tenantKeys.close();
    },
    principals,
    /** What authentication needs besides the signing keys: who a token is, and how refusals are counted. */
    authentication: {
      principals,
      audit,
      failuresPerMinute: config.authFailuresPerMinute,
      onAuditError: (err: unknown) => log.error({ err }, 'audit commit of counted refusals failed'),
    },
    replicas,
    readiness: {
      checks,
      onFailure: (check: string, err: unknown) =>
        log.warn({ check, err: { message: (err as Error).message } }, 'readiness check failed'),
    },
    jobs,
    auth: authService({
      identities,
      audit,
      defaultTtlSeconds: config.tokenTtlSeconds,
      throttle: new LoginThrottle({ maxFailures: config.loginMaxFailures, windowMs: 15 * 60_000 }),
      fingerprint: (value) => createHmac('sha256', unknownClientKey).update(value).digest('hex').slice(0, 32),
      sign: deps.sign,
      federation: trust,
      sessions,
    }),
    sessions,
    tenants: tenantService({ db, tenants, identities, keyring, audit, linkKey }),
    identities: identityService({ db, identities, tenants, audit, issuers, leases }),
    platformAdmins: platformAdminService({ db, identities, audit }),
    tenantKeys,
    trust,
    backends: backendService(dynamic),
    leases,
    secrets: secretService({
      db,
      secrets,
      keys: tenantKeys,
      audit,
      writer,
      webhooks: webhookOutbox,
      refreshPrincipal: (p) => principals.refresh(p),
      statements,
      cursors,
      environments: environmentRows,
      macs,
      deployments: deployments.reads,
    }),
    deployments,
    inventory: inventoryService({ queries: inventoryQueries(db), audit, cursors }),
    revocation,
    environments: environmentService({
      db,
      queries: environmentRows,
      secrets,
      keys: tenantKeys,
      writer,
      audit,
      webhooks: webhookOutbox,
      macs,
    }),
    intake,
    rotation,
    dataKeys,
    system,
    webhooks,
    auditService: auditService({
      queries: auditReads,
      audit,
      keyring,
      witness,
      checkpointMaxAgeMs: config.auditCheckpointMaxAgeMs,
    }),
    auditFollow: auditFollower({ queries: auditReads, audit, refreshPrincipal: (p) => principals.refresh(p) }),
  };
}

export type Services = ReturnType<typeof composeServices>;

/**
 * COFFER_PUBLIC_URL, or else the address the service listens on: the port it actually took (PORT=0 picks one), and a
 * wildcard host named as loopback.
 */
function publicUrlOf(
  config: Pick<Config, 'publicUrl' | 'host' | 'port' | 'tls'>,
  listening: string | AddressInfo | null,
): string {
  if (config.publicUrl) return config.publicUrl;
  const port = listening && typeof listening === 'object' ? listening.port : config.port;
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  return `${config.tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`;
}
