import type {
  BundleWriteRequest,
  BundleWriteResponse,
  ErrorIssue,
  PatchSecretRequest,
  PutSecretRequest,
  SecretFormat,
  SecretKind,
  SecretMetadata,
} from '@coffer/contracts';
import { auditEvent } from '../audit/audit.events.ts';
import type { AuditSink } from '../audit/audit.sink.ts';
import type { AuditEvent } from '../audit/audit.types.ts';
import { environmentHidden } from '../auth/authorize.ts';
import { principalOf } from '../auth/principal.ts';
import type { TenantKeyCache } from '../crypto/tenant-key-cache.ts';
import type { Database } from '../db/database.ts';
import { environmentNotFound, requireWritable } from '../environments/environment-gate.ts';
import type { EnvironmentQueries } from '../environments/environments.queries.ts';
import { AppError, conflict, notFound } from '../errors/app-error.ts';
import type { RequestContext } from '../http/request-context.ts';
import type { WebhookQueries } from '../webhooks/webhooks.queries.ts';
import { type ChangeNotice, notices, recordChange } from './secret-changes.ts';
import { allowed, requireAllowed } from './secret-reads.service.ts';
import {
  deploymentMetadataColumns,
  pathOf,
  planWrite,
  rotationColumns,
  type SecretWriter,
  toMetadata,
  writeTransaction,
} from './secret-writes.ts';
import type { SecretPath, SecretQueries, SecretRow } from './secrets.queries.ts';

export interface SecretWriteDeps {
  db: Pick<Database, 'withTenant'>;
  secrets: Pick<SecretQueries, 'lock' | 'lockMany' | 'update' | 'schedule' | 'purge' | 'destroyVersion'>;
  keys: Pick<TenantKeyCache, 'get' | 'invalidate'>;
  writer: SecretWriter;
  audit: Pick<AuditSink, 'appendInTx'>;
  webhooks: Pick<WebhookQueries, 'enqueueManyInTx'>;
  environments: Pick<EnvironmentQueries, 'get'>;
}

function unprocessable(problem: string, where: string): AppError {
  return new AppError('unprocessable', `the value does not satisfy the secret's format (${problem})`, [
    { path: where, message: problem },
  ]);
}

/** Changing secrets: each change, its audit events and its webhook rows commit together (recordChange). */
export function secretWrites(deps: SecretWriteDeps) {
  const { db, secrets, writer } = deps;

  return {
    async put(
      ctx: RequestContext,
      path: SecretPath,
      body: PutSecretRequest,
    ): Promise<{ created: boolean; metadata: SecretMetadata }> {
      const p = principalOf(ctx);
      const _where = pathOf(path);
      requireAllowed(p, 'secrets.write', path);
      const patterns = writer.validate({
        values: [{ value: body.value, where: 'body.value' }],
        formats: [{ format: body.format, where: 'body.format' }],
        expiresAt: body.expiresAt,
      });
      const result = await writeTransaction(deps, p.tenantId, async (keySet, tx) => {
        await requireWritable(deps.environments, p, path.environment, tx);
        await writer.compilePatterns(patterns, tx);
        const events: AuditEvent[] = [];
        const row = await writer.purgeIfWindowClosed(
          ctx,
          p.tenantId,
          await secrets.lock(p.tenantId, path, tx),
          tx,
          events,
        );
        const plan = planWrite(row, body.ifVersion);
        if (!plan.ok) throw conflict(plan.message);
        const format = body.format !== undefined ? body.format : ((row?.format ?? null) as SecretFormat | null);
        const problem = await writer.formatProblem(format, body.value, tx);
        if (problem) throw unprocessable(problem, 'body.value');
        const applied = await writer.applyWrite(p.identityId, p.tenantId, path, row, body, plan, keySet, tx);
        events.push(writer.writeEvent(ctx, applied.row, plan.version, keySet, body.value, applied.created));
        await recordChange(deps, tx, p.tenantId, {
          events,
          notices: [notices.written(p.tenantId, path, plan.version, applied.created)],
        });
        return applied;
      });
      return { created: result.created, metadata: toMetadata(result.row) };
    },

    async patch(ctx: RequestContext, path: SecretPath, body: PatchSecretRequest): Promise<SecretMetadata> {
      const p = principalOf(ctx);
      requireAllowed(p, 'secrets.update', path);
      const patterns = writer.validate({
        formats: [{ format: body.format, where: 'body.format' }],
        expiresAt: body.expiresAt,
      });
      const row = await db.withTenant(p.tenantId, async (tx) => {
        await requireWritable(deps.environments, p, path.environment, tx);
        await writer.compilePatterns(patterns, tx);
        const current = await secrets.lock(p.tenantId, path, tx);
        if (!current || current.deletedAt) throw notFound('secret');
        const updated = await secrets.update(
          p.tenantId,
          current.id,
          {
            updatedBy: p.identityId,
            ...(body.description !== undefined ? { description: body.description } : {}),
            ...(body.tags !== undefined ? { tags: body.tags } : {}),
            ...(body.format !== undefined ? { format: body.format } : {}),
            ...(body.expiresAt !== undefined ? { expiresAt: body.expiresAt ? new Date(body.expiresAt) : null } : {}),
            ...(body.rotation !== undefined ? rotationColumns(body.rotation, current.lastRotatedAt) : {}),
            ...deploymentMetadataColumns(body),
          },
          tx,
        );
        if (body.rotation !== undefined) await writer.syncSchedule(p.tenantId, updated, tx);
        await recordChange(deps, tx, p.tenantId, {
          events: [
            auditEvent(ctx, {
              action: 'secrets.update',
              outcome: 'allowed',
              resource: pathOf(path),
              environment: path.environment,
              version: updated.currentVersion,
              details: { fields: Object.keys(body).sort().join(',') },
            }),
          ],
        });
        return updated;
      });
      return toMetadata(row);
    },

    async remove(ctx: RequestContext, path: SecretPath, purge: boolean): Promise<void> {
      const p = principalOf(ctx);
      requireAllowed(p, 'secrets.delete', path);
      await db.withTenant(p.tenantId, async (tx) => {
        await requireWritable(deps.environments, p, path.environment, tx);
        const row = await secrets.lock(p.tenantId, path, tx);
        if (!row || (row.deletedAt && !purge)) throw notFound('secret');
        if (purge) await secrets.purge(p.tenantId, row.id, tx);
        else {
          await secrets.update(p.tenantId, row.id, { deletedAt: new Date(), deletedBy: p.identityId }, tx);
          await secrets.schedule(p.tenantId, row.id, null, false, tx);
        }
        await recordChange(deps, tx, p.tenantId, {
          events: [
            auditEvent(ctx, {
              action: purge ? 'secrets.purge' : 'secrets.delete',
              outcome: 'allowed',
              resource: pathOf(path),
              environment: path.environment,
              version: row.currentVersion,
            }),
          ],
          notices: [notices.deleted(p.tenantId, path, row.currentVersion, purge)],
        });
      });
    },

    async restore(ctx: RequestContext, path: SecretPath): Promise<SecretMetadata> {
      const p = principalOf(ctx);
      requireAllowed(p, 'secrets.restore', path);
      const row = await db.withTenant(p.tenantId, async (tx) => {
        await requireWritable(deps.environments, p, path.environment, tx);
        const events: AuditEvent[] = [];
        const current = await secrets.lock(p.tenantId, path, tx);
        if (!current) throw notFound('secret');
        if (!current.deletedAt) throw conflict('the secret is not deleted');
        if (!(await writer.purgeIfWindowClosed(ctx, p.tenantId, current, tx, events))) {
          await recordChange(deps, tx, p.tenantId, { events });
          return null;
        }
        const restored = await secrets.update(
          p.tenantId,
          current.id,
          { deletedAt: null, deletedBy: null, updatedBy: p.identityId },
          tx,
        );
        await writer.syncSchedule(p.tenantId, restored, tx);
        events.push(
          auditEvent(ctx, {
            action: 'secrets.restore',
            outcome: 'allowed',
            resource: pathOf(path),
            environment: path.environment,
            version: restored.currentVersion,
          }),
        );
        await recordChange(deps, tx, p.tenantId, { events });
        return restored;
      });
      if (!row) throw new AppError('gone', 'the recovery window has closed: the secret was erased');
      return toMetadata(row);
    },

    async destroy(ctx: RequestContext, path: SecretPath, version: number): Promise<void> {
      const p = principalOf(ctx);
      requireAllowed(p, 'secrets.destroy', path);
      await db.withTenant(p.tenantId, async (tx) => {
        await requireWritable(deps.environments, p, path.environment, tx);
        const row = await secrets.lock(p.tenantId, path, tx);
        if (!row || row.deletedAt) throw notFound('secret');
        if (version === row.currentVersion)
          throw conflict('the current version cannot be destroyed: write a new version first');
        if (!(await secrets.destroyVersion(p.tenantId, row.id, version, tx)))
          throw notFound(`version ${version} of the secret`);
        await recordChange(deps, tx, p.tenantId, {
          events: [
            auditEvent(ctx, {
              action: 'secrets.destroy',
              outcome: 'allowed',
              resource: pathOf(path),
              environment: path.environment,
              version,
            }),
          ],
        });
      });
    },

    /** All or nothing: every compare-and-set and format must hold, or nothing is written and every failure is named. */
    async writeBundle(
      ctx: RequestContext,
      environment: string,
      kind: SecretKind,
      owner: string,
      body: BundleWriteRequest,
    ): Promise<BundleWriteResponse> {
      const p = principalOf(ctx);
      const sets = Object.entries(body.set ?? {});
      const deletes = body.delete ?? [];
      if (environmentHidden(p, environment)) throw environmentNotFound(environment);
      const at = (name: string) => ({ environment, kind, owner, name });
      const denied: ErrorIssue[] = [
        ...sets
          .filter(([n]) => !allowed(p, 'secrets.write', at(n)))
          .map(([n]) => ({ path: `body.set.${n}`, message: 'no write capability' })),
        ...deletes
          .filter((n) => !allowed(p, 'secrets.delete', at(n)))
          .map((n) => ({ path: `body.delete.${n}`, message: 'no delete capability' })),
      ];
      if (denied.length > 0)
        throw new AppError('forbidden', 'this identity may not change every secret in the bundle', denied);
      const patterns = writer.validate({
        values: sets.map(([n, s]) => ({ value: s.value, where: `body.set.${n}.value` })),
        formats: sets.map(([n, s]) => ({ format: s.format, where: `body.set.${n}.format` })),
      });
      return writeTransaction(
        deps,
        p.tenantId,
        async (keySet, tx) => {
          await requireWritable(deps.environments, p, environment, tx);
          await writer.compilePatterns(patterns, tx);
          const events: AuditEvent[] = [];
          const names = [...sets.map(([n]) => n), ...deletes].sort();
          const locked = new Map(
            (await secrets.lockMany(p.tenantId, environment, kind, owner, names, tx)).map((r) => [r.name, r]),
          );
          for (const [name, row] of locked) {
            if (!(await writer.purgeIfWindowClosed(ctx, p.tenantId, row, tx, events))) locked.delete(name);
          }
          const conflicts: ErrorIssue[] = [];
          const unprocessables: ErrorIssue[] = [];
          const plans = new Map<string, { create: boolean; version: number }>();
          for (const [name, s] of sets) {
            const row = locked.get(name);
            const plan = planWrite(row, s.ifVersion);
            if (!plan.ok) {
              conflicts.push({ path: `body.set.${name}`, message: plan.message });
              continue;
            }
            plans.set(name, plan);
            const format = s.format !== undefined ? s.format : ((row?.format ?? null) as SecretFormat | null);
            const problem = await writer.formatProblem(format, s.value, tx);
            if (problem) unprocessables.push({ path: `body.set.${name}.value`, message: problem });
          }
          for (const name of deletes) {
            const row = locked.get(name);
            if (!row || row.deletedAt)
              conflicts.push({ path: `body.delete.${name}`, message: 'the secret does not exist' });
          }
          if (conflicts.length > 0)
            throw new AppError(
              'conflict',
              'the bundle was not applied: some secrets changed or do not exist',
              conflicts,
            );
          if (unprocessables.length > 0) {
            throw new AppError(
              'unprocessable',
              'the bundle was not applied: some values do not satisfy their format',
              unprocessables,
            );
          }
          const versions: Record<string, number | null> = Object.create(null);
          const changes: ChangeNotice[] = [];
          for (const [name, s] of sets) {
            const plan = plans.get(name) as { create: boolean; version: number };
            const applied = await writer.applyWrite(
              p.identityId,
              p.tenantId,
              at(name),
              locked.get(name),
              s,
              plan,
              keySet,
              tx,
            );
            versions[name] = plan.version;
            changes.push(notices.written(p.tenantId, applied.row, plan.version, applied.created));
            events.push(writer.writeEvent(ctx, applied.row, plan.version, keySet, s.value, applied.created, 'bundle'));
          }
          for (const name of deletes) {
            const row = locked.get(name) as SecretRow;
            await secrets.update(p.tenantId, row.id, { deletedAt: new Date(), deletedBy: p.identityId }, tx);
            await secrets.schedule(p.tenantId, row.id, null, false, tx);
            versions[name] = null;
            changes.push(notices.deleted(p.tenantId, row, row.currentVersion, false));
            events.push(
              auditEvent(ctx, {
                action: 'secrets.delete',
                outcome: 'allowed',
                resource: pathOf(row),
                environment,
                version: row.currentVersion,
                details: { via: 'bundle' },
              }),
            );
          }
          await recordChange(deps, tx, p.tenantId, { events, notices: changes });
          return { versions };
        },
        // The bundle was decided on what its caller saw; a name created under it since is the caller's conflict.
        (lost) => conflict(`${lost.path} was created concurrently; retry`),
      );
    },
  };
}

export type SecretWrites = ReturnType<typeof secretWrites>;
