import type {
  RevokedVersion,
  RevokeVersionRequest,
  RotationStatus,
  SecretConsumer,
  SecretConsumers,
} from '@coffer/contracts';
import { auditEvent } from '../audit/audit.events.ts';
import type { AuditSink } from '../audit/audit.sink.ts';
import { principalOf } from '../auth/principal.ts';
import type { RowMacs } from '../crypto/row-macs.ts';
import type { Database, Tx } from '../db/database.ts';
import { requireWritable } from '../environments/environment-gate.ts';
import type { EnvironmentQueries } from '../environments/environments.queries.ts';
import { AppError, conflict, notFound } from '../errors/app-error.ts';
import type { RequestContext } from '../http/request-context.ts';
import { notices, recordChange } from '../secrets/secret-changes.ts';
import { requireAllowed } from '../secrets/secret-reads.service.ts';
import { DEFAULT_GRACE_HOURS, pathOf } from '../secrets/secret-writes.ts';
import {
  type SecretPath,
  type SecretQueries,
  type SecretRow,
  secretMacFields,
  versionMacFields,
} from '../secrets/secrets.queries.ts';
import type { WebhookQueries } from '../webhooks/webhooks.queries.ts';
import type { ConsumerQueries, ConsumerRow } from './consumers.queries.ts';

/** A live deployment that was made on a version (it was generated for it): it holds that value until revoked. */
export interface VersionHolder {
  deploymentId: string;
  name: string;
  createdAt: Date;
  createdBy: string | null;
  createdByName: string | null;
}

export interface RevocationServiceDeps {
  db: Pick<Database, 'withTenant'>;
  secrets: Pick<SecretQueries, 'find' | 'lock' | 'versions' | 'revokeVersion'>;
  consumers: ConsumerQueries;
  /** Live deployments a version was generated for (the deployments module answers it). */
  holders: (tenantId: string, secretId: string, version: number, tx?: Tx) => Promise<VersionHolder[]>;
  audit: Pick<AuditSink, 'record' | 'appendInTx'>;
  webhooks: Pick<WebhookQueries, 'enqueueManyInTx'>;
  environments: Pick<EnvironmentQueries, 'get'>;
  /** A revocation decides from the secret's current version and the version's revoked_at and deployment: MACed. */
  macs: Pick<RowMacs, 'checkSecret' | 'checkVersion'>;
}

const DURATION_MS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const durationMs = (d: string) => Number(d.slice(0, -1)) * (DURATION_MS[d.slice(-1)] ?? 0);

function toConsumer(r: ConsumerRow): SecretConsumer {
  return {
    identity: { id: r.actor_id, name: r.actor_name },
    deployment: r.deployment,
    lastReadAt: r.occurred_at.toISOString(),
    lastVersion: r.version,
    viaBundle: r.source === 'bundle',
    source: r.source,
    reads: Number(r.reads),
  };
}

/** How a pending consumer is named in a refusal: who, for which deployment, which version, when. */
const describe = (c: SecretConsumer) =>
  `${c.identity.name ?? c.identity.id ?? 'unknown identity'}${c.deployment ? ` (deployment ${c.deployment})` : ''} ` +
  `read version ${c.lastVersion} at ${c.lastReadAt}${c.viaBundle ? ' through a bundle' : ''}`;

/**
 * Revocation that knows who depends on the old value. Consumers come from the audit chain (every read is there);
 * a consumer is still on a version when its last read within the secret's grace period was that version, and a live
 * deployment is on every version generated for it. Revoking a version such a consumer is on is refused
 * (`consumers_pending`) unless forced; a revoked version answers 410.
 */
export function revocationService(deps: RevocationServiceDeps) {
  const { db, secrets } = deps;

  const graceHoursOf = (row: SecretRow) => row.rotationGraceHours ?? DEFAULT_GRACE_HOURS;

  async function live(tenantId: string, path: SecretPath, tx?: Tx): Promise<SecretRow> {
    const row = tx ? await secrets.lock(tenantId, path, tx) : await secrets.find(tenantId, path);
    if (!row || row.deletedAt) throw notFound('secret');
    return row;
  }

  /** The secret row and the version a decision is about, once their MACs hold. */
  function checkRows(
    tenantId: string,
    row: SecretRow,
    v: Parameters<typeof versionMacFields>[1] & { mac: string | null },
  ): void {
    deps.macs.checkSecret(row.mac, secretMacFields(row));
    deps.macs.checkVersion(v.mac, versionMacFields(tenantId, v));
  }

  /** Who is still on `version`: last read within the grace period, or a live deployment made on it. */
  async function pendingOn(tenantId: string, row: SecretRow, version: number, tx?: Tx): Promise<SecretConsumer[]> {
    const since = new Date(Date.now() - graceHoursOf(row) * 3_600_000);
    const read = (await deps.consumers.consumers(tenantId, row, since, tx)).map(toConsumer);
    const pending = read.filter((c) => c.lastVersion === version);
    const counted = new Set(pending.map((c) => c.deployment).filter((d) => d !== null));
    for (const h of await deps.holders(tenantId, row.id, version, tx)) {
      if (counted.has(h.deploymentId)) continue;
      pending.push({
        identity: { id: h.createdBy, name: h.createdByName },
        deployment: h.deploymentId,
        lastReadAt: h.createdAt.toISOString(),
        lastVersion: version,
        viaBundle: false,
        source: 'deployment',
        reads: 1,
      });
    }
    return pending;
  }

  return {
    pendingOn,

    async consumers(ctx: RequestContext, path: SecretPath, within: string): Promise<SecretConsumers> {
      const p = principalOf(ctx);
      requireAllowed(p, 'secrets.consumers', path);
      const row = await live(p.tenantId, path);
      const since = new Date(Date.now() - durationMs(within));
      const items = (await deps.consumers.consumers(p.tenantId, row, since)).map(toConsumer);
      items.sort((a, b) => (a.lastReadAt < b.lastReadAt ? 1 : a.lastReadAt > b.lastReadAt ? -1 : 0));
      await deps.audit.record(
        auditEvent(ctx, {
          action: 'secrets.consumers',
          outcome: 'allowed',
          resource: pathOf(path),
          environment: path.environment,
          details: { count: items.length },
        }),
      );
      return {
        path: pathOf(path),
        environment: path.environment,
        since: since.toISOString(),
        current: row.currentVersion,
        items,
      };
    },

    async status(ctx: RequestContext, path: SecretPath): Promise<RotationStatus> {
      const p = principalOf(ctx);
      requireAllowed(p, 'secrets.rotation_status', path);
      const row = await live(p.tenantId, path);
      const versions = await secrets.versions(p.tenantId, row.id);
      const previous = versions.find((v) => v.version === row.currentVersion - 1 && !v.destroyed);
      if (previous) checkRows(p.tenantId, row, previous);
      const pending = previous && !previous.revokedAt ? await pendingOn(p.tenantId, row, previous.version) : [];
      await deps.audit.record(
        auditEvent(ctx, {
          action: 'secrets.rotation_status',
          outcome: 'allowed',
          resource: pathOf(path),
          environment: path.environment,
          version: row.currentVersion,
          details: { pending: pending.length },
        }),
      );
      return {
        path: pathOf(path),
        environment: path.environment,
        current: row.currentVersion,
        previous: previous?.version ?? null,
        previousServedUntil: previous?.servedUntil?.toISOString() ?? null,
        previousRevokedAt: previous?.revokedAt?.toISOString() ?? null,
        graceHours: graceHoursOf(row),
        consumersOnPrevious: pending,
        safeToRevoke: pending.length === 0,
      };
    },

    async revoke(
      ctx: RequestContext,
      path: SecretPath,
      version: number,
      body: RevokeVersionRequest,
    ): Promise<RevokedVersion> {
      const p = principalOf(ctx);
      requireAllowed(p, 'secrets.revoke', path);
      return db.withTenant(p.tenantId, async (tx) => {
        await requireWritable(deps.environments, p, path.environment, tx);
        const row = await live(p.tenantId, path, tx);
        if (version === row.currentVersion) {
          throw conflict('the current version cannot be revoked: rotate the secret first, then revoke this version');
        }
        const v = (await secrets.versions(p.tenantId, row.id, tx)).find((x) => x.version === version);
        if (!v) throw notFound(`version ${version} of the secret`);
        checkRows(p.tenantId, row, v);
        if (v.revokedAt) throw conflict(`version ${version} was already revoked at ${v.revokedAt.toISOString()}`);
        if (v.destroyed) throw conflict(`version ${version} was destroyed: there is nothing left to revoke`);
        const pending = await pendingOn(p.tenantId, row, version, tx);
        if (pending.length > 0 && body.force !== true) {
          throw new AppError(
            'consumers_pending',
            `${pending.length} consumer${pending.length === 1 ? '' : 's'} still read version ${version} within the ` +
              `last ${graceHoursOf(row)} hours: ${pending.slice(0, 5).map(describe).join('; ')}` +
              `${pending.length > 5 ? '; …' : ''}. Move them to version ${row.currentVersion}, or revoke with force`,
            pending.slice(0, 20).map((c, i) => ({ path: `consumers.${i}`, message: describe(c) })),
          );
        }
        const revokedAt = (await secrets.revokeVersion(p.tenantId, row.id, version, p.identityId, tx)) as Date;
        await recordChange(deps, tx, p.tenantId, {
          events: [
            auditEvent(ctx, {
              action: 'secrets.revoke',
              outcome: 'allowed',
              resource: pathOf(path),
              environment: path.environment,
              version,
              details: {
                forced: body.force === true,
                pending: pending.length,
                ...(row.ownerTeam ? { ownerTeam: row.ownerTeam } : {}),
                ...(body.notes ? { notes: body.notes } : {}),
              },
            }),
          ],
          notices: [notices.versionRevoked(p.tenantId, path, version, revokedAt, { forced: body.force === true })],
        });
        return {
          path: pathOf(path),
          environment: path.environment,
          version,
          revokedAt: revokedAt.toISOString(),
          forced: body.force === true,
          consumersPending: pending,
        };
      });
    },
  };
}

export type RevocationService = ReturnType<typeof revocationService>;
