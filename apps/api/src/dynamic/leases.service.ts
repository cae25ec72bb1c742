import { randomBytes, randomUUID } from 'node:crypto';
import type {
  CreateLeaseRequest,
  Lease,
  LeaseCredentials,
  LeaseListQuery,
  LeasePage,
  RenewLeaseRequest,
  RevokeLeasesResult,
} from '@coffer/contracts';
import { auditEvent } from '../audit/audit.events.ts';
import { environmentHidden } from '../auth/authorize.ts';
import { type Principal, principalOf } from '../auth/principal.ts';
import { newId } from '../crypto/ids.ts';
import type { RowMacs } from '../crypto/row-macs.ts';
import type { Tx } from '../db/database.ts';
import { scramVerifier } from '../db/roles.ts';
import { type DeploymentQueries, deploymentMacFields } from '../deployments/deployments.queries.ts';
import { AppError, conflict, notFound, unavailable } from '../errors/app-error.ts';
import { decodeIdCursor, pageOf } from '../http/cursor.ts';
import type { RequestContext } from '../http/request-context.ts';
import type { LeaseRow, RevokeReason } from './dynamic.queries.ts';
import {
  connectionUrl,
  type DynamicDeps,
  type LeaseRevoker,
  parsedStatements,
  requireLeaseAllowed,
} from './revocation.ts';
import {
  describeTargetError,
  nothingWasMade,
  TargetMisconfigured,
  TargetStatementFailed,
  TargetUnavailable,
} from './target.ts';
import { parseUsernameTemplate, renderUsername, TemplateProblem } from './templates.ts';

/** How long a creation may take before the expiry job treats it as crashed and revokes whatever it made. */
const CREATION_DEADLINE_MS = 120_000;

export function toLease(r: LeaseRow): Lease {
  return {
    id: r.id,
    backend: r.backendName,
    username: r.username,
    identityId: r.identityId,
    identityName: r.identityName,
    deploymentId: r.deploymentId,
    state: r.state,
    createdAt: r.createdAt.toISOString(),
    expiresAt: r.expiresAt.toISOString(),
    maxExpiresAt: r.maxExpiresAt.toISOString(),
    renewedAt: r.renewedAt?.toISOString() ?? null,
    revokeReason: r.revokeReason,
    revokedAt: r.revokedAt?.toISOString() ?? null,
    revokeAttempts: r.revokeAttempts,
    nextAttemptAt: r.nextAttemptAt?.toISOString() ?? null,
    lastError: r.lastError,
  };
}

/** A failure at the target, as the caller sees it: never more than the code and the statement's number. */
export function targetError(err: unknown, doing = 'make this lease'): unknown {
  if (err instanceof TargetUnavailable) {
    return unavailable(`the backend's database is unavailable: ${err.message}`, 5);
  }
  if (err instanceof TargetMisconfigured || err instanceof TargetStatementFailed) {
    return new AppError('unprocessable', `the backend cannot ${doing}: ${describeTargetError(err)}`);
  }
  return err;
}

/** 256 random bits: the password exists in the response and in the database's SCRAM verifier, nowhere else. */
const newLeasePassword = () => randomBytes(32).toString('base64url');

export interface LeaseServiceDeps extends DynamicDeps {
  revoker: LeaseRevoker;
  macs: Pick<RowMacs, 'checkSecret' | 'checkVersion' | 'checkDeployment'>;
  /** The deployment a lease is made for: it must be one the caller can see, whose row MAC holds, and not revoked. */
  deployments: Pick<DeploymentQueries, 'get' | 'items'>;
}

/**
 * Leases: a role made for the caller, renewed up to its backend's maximum, revoked on request or at expiry. A
 * service reaches only its own leases (another's is `not_found`, as one that does not exist), and makes or renews
 * them only with `read` on `dynamic/<backend>`.
 */
export function leaseService(deps: LeaseServiceDeps) {
  const { db, queries, audit, revoker, targets } = deps;

  const visible = (p: Principal, lease: LeaseRow | undefined): lease is LeaseRow =>
    lease !== undefined && (p.role !== 'service' || lease.identityId === p.identityId);

  // Background passes started by `kick`, so that a close waits for them.
  let kicked: Promise<unknown> | null = null;
  let again = false;
  let closed = false;

  /** Runs an expiry pass soon (after an identity's leases were asked to end), one at a time. */
  function kick(): void {
    if (closed) return;
    if (kicked) {
      again = true;
      return;
    }
    kicked = revoker
      .revokeDue()
      .catch((err) => deps.log.warn({ err: { message: (err as Error).message } }, 'lease revocation pass failed'))
      .finally(() => {
        kicked = null;
        if (again) {
          again = false;
          kick();
        }
      });
  }

  /**
   * 404 for a deployment the caller cannot see (as one that does not exist), 409 for one already revoked. Its row MAC
   * is checked as the deployment's own reads check it: coffer_app may update deployments, and a revocation it lifted
   * must not buy a lease.
   */
  async function requireLiveDeployment(p: Principal, id: string): Promise<void> {
    const d = await deps.deployments.get(p.tenantId, id);
    if (!d || environmentHidden(p, d.environment)) throw notFound('deployment');
    deps.macs.checkDeployment(d.mac, deploymentMacFields(d, await deps.deployments.items(p.tenantId, [d.id])));
    if (d.revokedAt) throw conflict(`deployment ${id} was revoked at ${d.revokedAt.toISOString()}: make a new one`);
  }

  async function revokeNow(ctx: RequestContext, ids: readonly string[], tenantId: string): Promise<number> {
    const claimed = await queries.claimIds(tenantId, ids, deps.claimMs);
    const outcomes = await revoker.each(claimed, 4, (c) => revoker.revokeClaimed(c, ctx));
    return outcomes.filter((o) => o === 'revoked').length;
  }

  return {
    kick,

    /** In an identity's transaction: every lease of the identity is asked to end; the job revokes them. */
    revokeForIdentityInTx(tenantId: string, identityId: string, reason: RevokeReason, tx: Tx): Promise<string[]> {
      return queries.markForRevocation(tenantId, { identityId }, reason, tx);
    },

    /** In a deployment's revocation: every lease made for it is asked to end; `kick` after the commit revokes them. */
    revokeForDeploymentInTx(tenantId: string, deploymentId: string, tx: Tx): Promise<string[]> {
      return queries.markForRevocation(tenantId, { deploymentId }, 'deployment_revoked', tx);
    },

    async create(ctx: RequestContext, name: string, body: CreateLeaseRequest | null | undefined) {
      const p = principalOf(ctx);
      requireLeaseAllowed(p, 'leases.create', name);
      const [backend] = await queries.backends(p.tenantId, name);
      if (!backend) throw notFound('backend');
      const deploymentId = body?.deployment ?? null;
      if (deploymentId !== null) await requireLiveDeployment(p, deploymentId);
      let template: ReturnType<typeof parseUsernameTemplate>;
      let statements: ReturnType<typeof parsedStatements>;
      let url: string;
      try {
        await deps.seals.checkBackend(p.tenantId, backend);
        template = parseUsernameTemplate(backend.usernameTemplate);
        statements = parsedStatements(backend.creationStatements, 'creation');
        url = await connectionUrl(deps, p.tenantId, backend);
      } catch (err) {
        throw targetError(err instanceof TemplateProblem ? new TargetMisconfigured(err.message) : err);
      }
      const now = new Date();
      const ttl = Math.min(body?.ttlSeconds ?? backend.defaultTtlSeconds, backend.maxTtlSeconds);
      const expiresAt = new Date(now.getTime() + ttl * 1000);
      const maxExpiresAt = new Date(now.getTime() + backend.maxTtlSeconds * 1000);
      const username = renderUsername(template, { backend: backend.name, identity: p.name, now });
      const password = newLeasePassword();
      const id = newId();
      const claim = randomUUID();
      const seal = await deps.seals.lease(p.tenantId, {
        id,
        backendName: backend.name,
        identityId: p.identityId,
        username,
      });
      // Recorded before the role exists, so that a crash from here on leaves a lease the job revokes, not a role
      // nobody knows about.
      await queries.insertLease(p.tenantId, {
        id,
        backendId: backend.id,
        backendName: backend.name,
        identityId: p.identityId,
        identityName: p.name,
        deploymentId,
        username,
        seal,
        state: 'creating',
        expiresAt,
        maxExpiresAt,
        claimToken: claim,
        nextAttemptAt: new Date(now.getTime() + CREATION_DEADLINE_MS),
      });
      try {
        await targets.create(url, statements, {
          name: username,
          password: scramVerifier(password),
          expiration: expiresAt,
        });
      } catch (err) {
        // Nothing to undo if the target never committed anything; else the job drops whatever may have been made.
        const settle = nothingWasMade(err) ? queries.failCreation : queries.abandonCreation;
        await settle(p.tenantId, id, claim).catch(() => undefined);
        throw targetError(err);
      }
      const row = await db.withTenant(p.tenantId, async (tx) => {
        const activated = await queries.activate(p.tenantId, id, claim, tx);
        if (activated) {
          await audit.appendInTx(tx, [
            auditEvent(ctx, {
              action: 'leases.create',
              outcome: 'allowed',
              resource: `dynamic/${backend.name}`,
              details: {
                leaseId: id,
                username,
                ttlSeconds: ttl,
                expiresAt: expiresAt.toISOString(),
                ...(deploymentId ? { deployment: deploymentId } : {}),
              },
            }),
          ]);
        }
        return activated;
      });
      if (!row) {
        await queries.abandonCreation(p.tenantId, id, claim).catch(() => undefined);
        // The deployment was revoked while the role was being made: the role is dropped, as the deployment's are.
        if (deploymentId !== null) await requireLiveDeployment(p, deploymentId);
        throw unavailable('the lease could not be completed: try again');
      }
      const credentials: LeaseCredentials = {
        leaseId: id,
        username,
        password,
        expiresAt: expiresAt.toISOString(),
        maxExpiresAt: maxExpiresAt.toISOString(),
      };
      return credentials;
    },

    async list(ctx: RequestContext, q: LeaseListQuery): Promise<LeasePage> {
      const p = principalOf(ctx);
      const rows = await queries.page(
        p.tenantId,
        { identityId: q.identity, backend: q.backend, deploymentId: q.deployment, state: q.state },
        decodeIdCursor(q.cursor),
        q.limit + 1,
      );
      const { items, nextCursor } = pageOf(rows, q.limit);
      await audit.record(
        auditEvent(ctx, {
          action: 'leases.list',
          outcome: 'allowed',
          resource: 'leases',
          details: { count: items.length },
        }),
      );
      return { items: items.map(toLease), nextCursor };
    },

    async get(ctx: RequestContext, id: string): Promise<Lease> {
      const p = principalOf(ctx);
      const lease = await queries.lease(p.tenantId, id);
      if (!visible(p, lease)) throw notFound('lease');
      await audit.record(
        auditEvent(ctx, {
          action: 'leases.read',
          outcome: 'allowed',
          resource: `dynamic/${lease.backendName}`,
          details: { leaseId: id },
        }),
      );
      return toLease(lease);
    },

    /** A later expiry, capped at the lease's maximum; the role's VALID UNTIL follows (the renew statements). */
    async renew(ctx: RequestContext, id: string, body: RenewLeaseRequest | null | undefined): Promise<Lease> {
      const p = principalOf(ctx);
      return db.withTenant(p.tenantId, async (tx) => {
        // Locked for the renewal: the expiry job skips a locked lease, so a renewal and a revocation never cross.
        const lease = await queries.leaseForUpdate(p.tenantId, id, tx);
        if (!visible(p, lease)) throw notFound('lease');
        requireLeaseAllowed(p, 'leases.renew', lease.backendName);
        const now = Date.now();
        if (lease.state !== 'active' || lease.expiresAt.getTime() <= now) {
          throw conflict(`the lease is ${lease.state === 'active' ? 'expired' : lease.state}: take a new one`);
        }
        const backend = lease.backendId ? await queries.backendById(p.tenantId, lease.backendId, tx) : undefined;
        if (!backend) throw notFound('backend');
        const wanted = now + (body?.ttlSeconds ?? backend.defaultTtlSeconds) * 1000;
        const to = new Date(Math.max(lease.expiresAt.getTime(), Math.min(wanted, lease.maxExpiresAt.getTime())));
        let row = lease;
        if (to.getTime() > lease.expiresAt.getTime()) {
          try {
            await deps.seals.checkBackend(p.tenantId, backend);
            await deps.seals.checkLease(p.tenantId, lease);
            const url = await connectionUrl(deps, p.tenantId, backend);
            const statements = parsedStatements(backend.renewStatements, 'renew');
            const done = await targets.renew(url, statements, { name: lease.username, expiration: to });
            if (done === 'absent') throw conflict('the lease’s role is gone from the database: take a new lease');
          } catch (err) {
            throw targetError(err, 'renew this lease');
          }
          row = await queries.renew(p.tenantId, id, to, tx);
        }
        await audit.appendInTx(tx, [
          auditEvent(ctx, {
            action: 'leases.renew',
            outcome: 'allowed',
            resource: `dynamic/${lease.backendName}`,
            details: {
              leaseId: id,
              from: lease.expiresAt.toISOString(),
              to: to.toISOString(),
              capped: wanted > lease.maxExpiresAt.getTime(),
              atMaximum: to.getTime() === lease.maxExpiresAt.getTime(),
            },
          }),
        ]);
        return toLease(row);
      });
    },

    /** Ends a lease now: 200 once the role is gone, 202 if the database did not answer (the job retries). */
    async revoke(ctx: RequestContext, id: string): Promise<{ status: 200 | 202; lease: Lease }> {
      const p = principalOf(ctx);
      const lease = await queries.lease(p.tenantId, id);
      if (!visible(p, lease)) throw notFound('lease');
      if (lease.state === 'creating') throw conflict('the lease is still being made: try again in a moment');
      const resource = `dynamic/${lease.backendName}`;
      if (lease.state !== 'revoked') {
        await db.withTenant(p.tenantId, (tx) => queries.markForRevocation(p.tenantId, { leaseId: id }, 'revoked', tx));
        await revokeNow(ctx, [id], p.tenantId);
      }
      const after = (await queries.lease(p.tenantId, id)) as LeaseRow;
      if (after.state === 'revoked' && lease.state === 'revoked') {
        await audit.record(
          auditEvent(ctx, {
            action: 'leases.revoke_requested',
            outcome: 'allowed',
            resource,
            details: { leaseId: id, already: true },
          }),
        );
      } else if (after.state !== 'revoked') {
        // Asked for, not done yet: the revocation's own event comes when it is.
        await audit.record(
          auditEvent(ctx, {
            action: 'leases.revoke_requested',
            outcome: 'allowed',
            resource,
            details: { leaseId: id, state: after.state, error: after.lastError },
          }),
        );
      }
      return { status: after.state === 'revoked' ? 200 : 202, lease: toLease(after) };
    },

    /** Ends every lease of an identity, or of a backend: as many as answer now, the rest through the job. */
    async revokeMany(
      ctx: RequestContext,
      q: { identity?: string | undefined; backend?: string | undefined; deployment?: string | undefined },
    ): Promise<RevokeLeasesResult> {
      const p = principalOf(ctx);
      const ids = await db.withTenant(p.tenantId, async (tx) => {
        let backendId: string | undefined;
        if (q.backend !== undefined) {
          const backend = await queries.lockBackend(p.tenantId, q.backend, tx);
          if (!backend) throw notFound('backend');
          backendId = backend.id;
        }
        const marked = await queries.markForRevocation(
          p.tenantId,
          {
            ...(q.identity ? { identityId: q.identity } : {}),
            ...(backendId ? { backendId } : {}),
            ...(q.deployment ? { deploymentId: q.deployment } : {}),
          },
          q.identity ? 'identity_revoked' : q.deployment ? 'deployment_revoked' : 'revoked',
          tx,
        );
        await audit.appendInTx(tx, [
          auditEvent(ctx, {
            action: 'leases.revoke_many',
            outcome: 'allowed',
            resource: q.backend ? `dynamic/${q.backend}` : 'leases',
            details: {
              identity: q.identity ?? null,
              backend: q.backend ?? null,
              deployment: q.deployment ?? null,
              requested: marked.length,
            },
          }),
        ]);
        return marked;
      });
      await revokeNow(ctx, ids, p.tenantId);
      // Counted from the rows: a worker that claimed some first (the job) may have revoked them meanwhile.
      const revoked = (await queries.leasesByIds(p.tenantId, ids)).filter((l) => l.state === 'revoked').length;
      return { requested: ids.length, revoked, pending: ids.length - revoked };
    },

    async close(): Promise<void> {
      closed = true;
      await kicked;
      await targets.close();
    },
  };
}

export type LeaseService = ReturnType<typeof leaseService>;
