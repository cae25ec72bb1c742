import type {
  BundleWriteRequest,
  BundleWriteResponse,
  ErrorIssue,
  PatchSecretRequest,
  PutSecretRequest,
  SecretKind,
  SecretMetadata,
} from '@coffer/contracts';
import { auditEvent } from '../audit/audit.events.ts';
import type { AuditSink } from '../audit/audit.sink.ts';
import type { AuditEvent } from '../audit/audit.types.ts';
import { environmentHidden } from '../auth/authorize.ts';
import { type Principal, principalOf } from '../auth/principal.ts';
import type { Database } from '../db/database.ts';
import { environmentNotFound, requireWritable } from '../environments/environment-gate.ts';
import type { EnvironmentQueries } from '../environments/environments.queries.ts';
import { AppError, conflict, notFound } from '../errors/app-error.ts';
import type { RequestContext } from '../http/request-context.ts';
import type { WebhookQueries } from '../webhooks/webhooks.queries.ts';
import { notices, recordChange } from './secret-changes.ts';
import { allowed, requireAllowed } from './secret-reads.service.ts';
import type { NameChange, StatementWrites } from './secret-write-statement.ts';
import { deploymentMetadataColumns, pathOf, rotationColumns, type SecretWriter, toMetadata } from './secret-writes.ts';
import type { SecretPath, SecretQueries } from './secrets.queries.ts';

export interface SecretWriteDeps {
  db: Pick<Database, 'withTenant'>;
  /** PUT and bundle writes: one statement each (secret-write-statement.ts). */
  statements: Pick<StatementWrites, 'write'>;
  /** Rebuilds a principal whose identity changed; 401 if it may no longer act. */
  refreshPrincipal: (p: Principal) => Promise<Principal>;
  secrets: Pick<SecretQueries, 'lock' | 'update' | 'schedule' | 'purge' | 'destroyVersion'>;
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
      const first = principalOf(ctx);
      if (first.cached && !allowed(first, 'secrets.write', path)) {
        // A cached principal may carry policies that were widened since: refuse only on the current ones.
        ctx.principal = await deps.refreshPrincipal(first);
      }
      const authorize = (p: Principal) => requireAllowed(p, 'secrets.write', path);
      authorize(principalOf(ctx));
      const patterns = writer.validate({
        values: [{ value: body.value, where: 'body.value' }],
        formats: [{ format: body.format, where: 'body.format' }],
        expiresAt: body.expiresAt,
      });
      const written = await deps.statements.write(
        ctx,
        path,
        [{ name: path.name, set: body, where: 'body.value', at: 'body' }],
        patterns,
        {
          conflict: (issues) => conflict(issues[0]?.message ?? 'conflict'),
          unprocessable: (issues) => unprocessable(issues[0]?.message ?? 'format', issues[0]?.path ?? 'body.value'),
        },
        authorize,
      );
      const w = written.get(path.name);
      if (!w) throw new Error('the write returned no row');
      return { created: w.created, metadata: toMetadata(w.row) };
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
      const sets = Object.entries(body.set ?? {});
      const deletes = body.delete ?? [];
      const at = (name: string) => ({ environment, kind, owner, name });
      const authorize = (p: Principal) => {
        if (environmentHidden(p, environment)) throw environmentNotFound(environment);
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
      };
      const first = principalOf(ctx);
      if (first.cached) {
        try {
          authorize(first);
        } catch {
          // A cached principal may carry policies that were widened since: refuse only on the current ones.
          ctx.principal = await deps.refreshPrincipal(first);
        }
      }
      authorize(principalOf(ctx));
      const patterns = writer.validate({
        values: sets.map(([n, s]) => ({ value: s.value, where: `body.set.${n}.value` })),
        formats: sets.map(([n, s]) => ({ format: s.format, where: `body.set.${n}.format` })),
      });
      const changes: NameChange[] = [
        ...sets.map(([name, set]) => ({
          name,
          set,
          where: `body.set.${name}.value`,
          at: `body.set.${name}`,
          via: 'bundle',
        })),
        ...deletes.map((name) => ({
          name,
          remove: true as const,
          where: `body.delete.${name}`,
          at: `body.delete.${name}`,
          via: 'bundle',
        })),
      ];
      const written = await deps.statements.write(
        ctx,
        { environment, kind, owner },
        changes,
        patterns,
        {
          conflict: (issues) =>
            new AppError('conflict', 'the bundle was not applied: some secrets changed or do not exist', issues),
          unprocessable: (issues) =>
            new AppError(
              'unprocessable',
              'the bundle was not applied: some values do not satisfy their format',
              issues,
            ),
        },
        authorize,
      );
      const versions: Record<string, number | null> = Object.create(null);
      for (const [name] of sets) versions[name] = written.get(name)?.version ?? null;
      for (const name of deletes) versions[name] = null;
      return { versions };
    },
  };
}

export type SecretWrites = ReturnType<typeof secretWrites>;
