import type {
  Action,
  Bundle,
  BundleWriteRequest,
  BundleWriteResponse,
  ErrorIssue,
  PatchSecretRequest,
  PutSecretRequest,
  SecretFormat,
  SecretKind,
  SecretMetadata,
  SecretPage,
  SecretVersions,
  SecretWithValue,
} from '@coffer/contracts';
import { auditEvent, type RequestContext } from '../audit/audit.context.ts';
import type { AuditSink } from '../audit/audit.sink.ts';
import type { AuditEvent } from '../audit/audit.types.ts';
import { authorize } from '../auth/authorize.ts';
import { type Principal, principalOf } from '../auth/principal.ts';
import type { TenantKeyCache } from '../crypto/tenant-keys.ts';
import type { Database } from '../db/database.ts';
import { pgErrorCode } from '../db/pg-errors.ts';
import { AppError, conflict, forbidden, notFound, unauthorized } from '../errors/app-error.ts';
import type { CursorCodec } from '../http/cursor.ts';
import type { WebhookQueries } from '../webhooks/webhooks.queries.ts';
import { pathOf, planWrite, rotationColumns, type SecretWriter, toMetadata } from './secret-writes.ts';
import { bindingLine, type ReadRow, type SecretPath, type SecretQueries, type SecretRow } from './secrets.queries.ts';

export interface SecretServiceDeps {
  db: Pick<Database, 'withTenant'>;
  /** Rebuilds a principal whose identity changed (a hot read's statement found a newer revision). */
  refreshPrincipal: (p: Principal) => Promise<Principal>;
  secrets: SecretQueries;
  keys: Pick<TenantKeyCache, 'get' | 'invalidate'>;
  writer: SecretWriter;
  audit: AuditSink;
  /** `secret.written` and `secret.deleted` go out in the change's own transaction: no change without its event. */
  webhooks: Pick<WebhookQueries, 'enqueueManyInTx'>;
  /** Seals list cursors: a scan may resume after a row the caller may not list, so it must not read the cursor. */
  cursors: CursorCodec;
}

type SecretEvent = { event: 'secret.written' | 'secret.deleted'; payload: Record<string, unknown> };

/** What a subscriber learns of a change: where and which version, never the value. */
function written(tenantId: string, path: string, version: number, created: boolean): SecretEvent {
  return { event: 'secret.written', payload: { tenantId, path, version, created, at: new Date().toISOString() } };
}

function deleted(tenantId: string, path: string, version: number, purged: boolean): SecretEvent {
  return { event: 'secret.deleted', payload: { tenantId, path, version, purged, at: new Date().toISOString() } };
}

export const integrityError = () =>
  new AppError('integrity_error', 'a stored ciphertext failed its integrity check; the incident was recorded');

/** Decided by the one authorization function; a refusal is a 403 that names the missing capability. */
function requireAllowed(p: Principal, action: Action, path: string): void {
  const d = authorize(p, action, path);
  if (!d.allowed) throw forbidden(d.reason);
}

const allowed = (p: Principal, action: Action, path: string): boolean => authorize(p, action, path).allowed;

/** Decrypted plaintext → value, after checking that its binding line names this tenant, secret and version. */
export function unbind(tenantId: string, secretId: string, version: number, plaintext: string): string {
  const binding = bindingLine(tenantId, secretId, version);
  if (!plaintext.startsWith(binding)) throw integrityError();
  return plaintext.slice(binding.length);
}

/** pgcrypto reports a ciphertext that is not under the given key as "Wrong key or corrupt data" (39000). */
async function withIntegrity<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (pgErrorCode(err) === '39000') throw integrityError();
    throw err;
  }
}

/** Secrets of one tenant: reading, writing, versioning and deleting, each with its audit event. */
export function secretService(deps: SecretServiceDeps) {
  const { db, secrets, keys, audit, writer } = deps;

  function unprocessable(problem: string, where: string): AppError {
    return new AppError('unprocessable', `the value does not satisfy the secret's format (${problem})`, [
      { path: where, message: problem },
    ]);
  }

  return {
    async put(
      ctx: RequestContext,
      path: SecretPath,
      body: PutSecretRequest,
    ): Promise<{ created: boolean; metadata: SecretMetadata }> {
      const p = principalOf(ctx);
      requireAllowed(p, 'secrets.write', pathOf(path));
      writer.checkSize(body.value, 'body.value');
      writer.checkExpiry(body.expiresAt);
      await writer.checkNewFormat(body.format, 'body.format');
      const result = await writer.withFreshKeys(p.tenantId, (keySet) =>
        db.withTenant(p.tenantId, async (tx) => {
          const events: AuditEvent[] = [];
          for (let attempt = 0; attempt < 2; attempt++) {
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
            if (applied === 'raced') continue; // created by a concurrent writer a moment ago: decide again
            events.push(writer.writeEvent(ctx, applied.row, plan.version, keySet, body.value, applied.created));
            await deps.webhooks.enqueueManyInTx(
              p.tenantId,
              [written(p.tenantId, pathOf(path), plan.version, applied.created)],
              tx,
            );
            // Last: it takes the tenant's chain-head lock, which every other write of the tenant waits for.
            await audit.appendInTx(tx, events);
            return applied;
          }
          throw conflict('the secret changed concurrently; retry');
        }),
      );
      return { created: result.created, metadata: toMetadata(result.row) };
    },

    async patch(ctx: RequestContext, path: SecretPath, body: PatchSecretRequest): Promise<SecretMetadata> {
      const p = principalOf(ctx);
      requireAllowed(p, 'secrets.update', pathOf(path));
      writer.checkExpiry(body.expiresAt);
      await writer.checkNewFormat(body.format, 'body.format');
      const row = await db.withTenant(p.tenantId, async (tx) => {
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
          },
          tx,
        );
        if (body.rotation !== undefined) await writer.syncSchedule(p.tenantId, updated, tx);
        await audit.appendInTx(tx, [
          auditEvent(ctx, {
            action: 'secrets.update',
            outcome: 'allowed',
            resource: pathOf(path),
            version: updated.currentVersion,
            details: { fields: Object.keys(body).sort().join(',') },
          }),
        ]);
        return updated;
      });
      return toMetadata(row);
    },

    async get(
      ctx: RequestContext,
      path: SecretPath,
      version: number | 'previous' | undefined,
    ): Promise<SecretWithValue> {
      let p = principalOf(ctx);
      if (p.cached && !allowed(p, 'secrets.read', pathOf(path))) {
        // A cached principal may carry policies that were widened since: refuse only on the current ones.
        p = await deps.refreshPrincipal(p);
        ctx.principal = p;
      }
      requireAllowed(p, 'secrets.read', pathOf(path));
      const wanted = version === 'previous' ? -1 : (version ?? null);
      let keySet = await keys.get(p.tenantId);
      let row: ReadRow | undefined;
      let reloadedKeys = false;
      let reloadedIdentity = false;
      for (;;) {
        const set = keySet;
        const caller = p;
        row = await withIntegrity(() => secrets.read(caller.tenantId, caller, path, wanted, set.sqlKeys));
        if (row && !row.identity_ok) {
          // The identity changed since its principal was cached: rebuild it and decide again (401/403 if it must).
          if (reloadedIdentity) throw unauthorized('the token is no longer valid: log in again');
          reloadedIdentity = true;
          p = await deps.refreshPrincipal(p);
          ctx.principal = p;
          requireAllowed(p, 'secrets.read', pathOf(path));
          continue;
        }
        const served = !row?.served_until || row.served_until > new Date();
        const keyMissing = row?.version != null && !row.destroyed && !row.expired && served && row.plaintext === null;
        if (!keyMissing) break;
        // Sealed under a data key this replica has not loaded yet (rotated elsewhere): reload once.
        if (reloadedKeys) throw integrityError();
        reloadedKeys = true;
        keys.invalidate(p.tenantId);
        keySet = await keys.get(p.tenantId);
      }
      if (!row) throw notFound('secret');
      if (row.version === null)
        throw notFound(
          version === 'previous' ? 'a previous version of the secret' : `version ${version} of the secret`,
        );
      if (row.expired) throw new AppError('expired', `the secret expired at ${row.expires_at?.toISOString()}`);
      if (row.destroyed) throw new AppError('gone', `version ${row.version} was destroyed`);
      if (row.plaintext === null && row.served_until) {
        throw new AppError(
          'gone',
          `version ${row.version} was rotated out; its grace period ended at ${row.served_until.toISOString()}`,
        );
      }
      const value = unbind(p.tenantId, row.secret_id, row.version, row.plaintext as string);
      await audit.record(
        auditEvent(ctx, { action: 'secrets.read', outcome: 'allowed', resource: pathOf(path), version: row.version }),
      );
      const metadata = toMetadata({
        id: row.secret_id,
        tenantId: p.tenantId,
        ...path,
        currentVersion: row.current_version,
        description: row.description,
        tags: row.tags,
        format: row.format,
        expiresAt: row.expires_at,
        createdAt: row.created_at,
        updatedAt: row.updated_at,
        createdBy: row.created_by,
        updatedBy: null,
        deletedAt: null,
        deletedBy: null,
        rotationIntervalDays: row.rotation_interval_days,
        rotationGraceHours: row.rotation_grace_hours,
        generator: row.generator,
        lastRotatedAt: row.last_rotated_at,
        nextRotationAt: row.next_rotation_at,
      });
      return { ...metadata, version: row.version, value };
    },

    async versions(ctx: RequestContext, path: SecretPath): Promise<SecretVersions> {
      const p = principalOf(ctx);
      const where = pathOf(path);
      requireAllowed(p, 'secrets.versions', where);
      const items = await db.withTenant(p.tenantId, async (tx) => {
        const row = await secrets.lock(p.tenantId, path, tx);
        if (!row || row.deletedAt) throw notFound('secret');
        const rows = await secrets.versions(p.tenantId, row.id, tx);
        return rows.map((v) => ({
          version: v.version,
          createdAt: v.createdAt.toISOString(),
          createdBy: v.createdBy,
          destroyedAt: v.destroyedAt?.toISOString() ?? null,
          servedUntil: v.servedUntil?.toISOString() ?? null,
          state: v.destroyed
            ? ('destroyed' as const)
            : v.version === row.currentVersion
              ? ('current' as const)
              : v.version === row.currentVersion - 1
                ? ('previous' as const)
                : ('old' as const),
        }));
      });
      await audit.record(auditEvent(ctx, { action: 'secrets.versions', outcome: 'allowed', resource: where }));
      return { items: items.reverse() };
    },

    async list(
      ctx: RequestContext,
      q: {
        kind?: SecretKind | undefined;
        owner?: string | undefined;
        prefix?: string | undefined;
        limit: number;
        cursor?: string | undefined;
      },
    ): Promise<SecretPage> {
      const p = principalOf(ctx);
      const scope = {
        route: 'secrets.list',
        tenantId: p.tenantId,
        identityId: p.identityId,
        filters: { kind: q.kind, owner: q.owner, prefix: q.prefix },
      };
      const cursor = deps.cursors.open(scope, q.cursor, ['k', 'o', 'n'] as const);
      let after: SecretPath | undefined = cursor
        ? { kind: cursor.k as SecretKind, owner: cursor.o, name: cursor.n }
        : undefined;
      const items: SecretRow[] = [];
      let exhausted = false;
      // Services see only what they may list: keep reading until this page is full or the rows run out.
      for (let round = 0; round < 20 && items.length <= q.limit && !exhausted; round++) {
        const batch = await secrets.list(p.tenantId, q, after, q.limit + 1);
        exhausted = batch.length < q.limit + 1;
        for (const row of batch) {
          if (allowed(p, 'secrets.list', pathOf(row))) items.push(row);
          after = row;
          if (items.length > q.limit) break;
        }
      }
      const pageItems = items.slice(0, q.limit);
      // A full page continues after its last item; a scan that ran out of budget continues after the last row
      // it looked at (so a service whose secrets sort late still reaches them, page by page).
      const resumeAt: SecretPath | undefined =
        items.length > q.limit ? pageItems.at(-1) : exhausted ? undefined : after;
      await audit.record(
        auditEvent(ctx, {
          action: 'secrets.list',
          outcome: 'allowed',
          resource: [q.kind, q.owner, q.prefix].filter((x) => x !== undefined).join('/') || null,
          details: { count: pageItems.length },
        }),
      );
      return {
        items: pageItems.map(toMetadata),
        nextCursor: resumeAt
          ? deps.cursors.seal(scope, { k: resumeAt.kind, o: resumeAt.owner, n: resumeAt.name })
          : null,
      };
    },

    async remove(ctx: RequestContext, path: SecretPath, purge: boolean): Promise<void> {
      const p = principalOf(ctx);
      requireAllowed(p, 'secrets.delete', pathOf(path));
      await db.withTenant(p.tenantId, async (tx) => {
        const row = await secrets.lock(p.tenantId, path, tx);
        if (!row || (row.deletedAt && !purge)) throw notFound('secret');
        if (purge) await secrets.purge(p.tenantId, row.id, tx);
        else {
          await secrets.update(p.tenantId, row.id, { deletedAt: new Date(), deletedBy: p.identityId }, tx);
          await secrets.schedule(p.tenantId, row.id, null, false, tx);
        }
        await audit.appendInTx(tx, [
          auditEvent(ctx, {
            action: purge ? 'secrets.purge' : 'secrets.delete',
            outcome: 'allowed',
            resource: pathOf(path),
            version: row.currentVersion,
          }),
        ]);
        await deps.webhooks.enqueueManyInTx(
          p.tenantId,
          [deleted(p.tenantId, pathOf(path), row.currentVersion, purge)],
          tx,
        );
      });
    },

    async restore(ctx: RequestContext, path: SecretPath): Promise<SecretMetadata> {
      const p = principalOf(ctx);
      requireAllowed(p, 'secrets.restore', pathOf(path));
      const row = await db.withTenant(p.tenantId, async (tx) => {
        const events: AuditEvent[] = [];
        const current = await secrets.lock(p.tenantId, path, tx);
        if (!current) throw notFound('secret');
        if (!current.deletedAt) throw conflict('the secret is not deleted');
        if (!(await writer.purgeIfWindowClosed(ctx, p.tenantId, current, tx, events))) {
          await audit.appendInTx(tx, events);
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
            version: restored.currentVersion,
          }),
        );
        await audit.appendInTx(tx, events);
        return restored;
      });
      if (!row) throw new AppError('gone', 'the recovery window has closed: the secret was erased');
      return toMetadata(row);
    },

    async destroy(ctx: RequestContext, path: SecretPath, version: number): Promise<void> {
      const p = principalOf(ctx);
      requireAllowed(p, 'secrets.destroy', pathOf(path));
      await db.withTenant(p.tenantId, async (tx) => {
        const row = await secrets.lock(p.tenantId, path, tx);
        if (!row || row.deletedAt) throw notFound('secret');
        if (version === row.currentVersion)
          throw conflict('the current version cannot be destroyed: write a new version first');
        if (!(await secrets.destroyVersion(p.tenantId, row.id, version, tx)))
          throw notFound(`version ${version} of the secret`);
        await audit.appendInTx(tx, [
          auditEvent(ctx, { action: 'secrets.destroy', outcome: 'allowed', resource: pathOf(path), version }),
        ]);
      });
    },

    async bundle(ctx: RequestContext, kind: SecretKind, owner: string): Promise<Bundle> {
      let p = principalOf(ctx);
      // Names are keys: no prototype, so a name such as `constructor` is only ever an own entry.
      const values: Record<string, string> = Object.create(null);
      const versions: Record<string, number> = Object.create(null);
      let keySet = await keys.get(p.tenantId);
      let reloadedKeys = false;
      let reloadedIdentity = false;
      for (;;) {
        // Admins read every name, so the list of names is only fetched to filter a service's view.
        let names: string[] | null = null;
        if (p.role !== 'admin') {
          const caller = p;
          const all = await secrets.bundleNames(p.tenantId, kind, owner);
          // Even with no readable name the read goes ahead: its statement re-checks a cached identity.
          names = all.filter((n) => allowed(caller, 'secrets.read', `${kind}/${owner}/${n}`));
        }
        const set = keySet;
        const caller = p;
        const rows = await withIntegrity(() =>
          secrets.readBundle(caller.tenantId, caller, kind, owner, names, set.sqlKeys),
        );
        if (rows === null) {
          if (reloadedIdentity) throw unauthorized('the token is no longer valid: log in again');
          reloadedIdentity = true;
          p = await deps.refreshPrincipal(p);
          ctx.principal = p;
          continue;
        }
        if (rows.some((r) => r.plaintext === null)) {
          if (reloadedKeys) throw integrityError();
          reloadedKeys = true;
          keys.invalidate(p.tenantId);
          keySet = await keys.get(p.tenantId);
          continue;
        }
        for (const r of rows) {
          values[r.name] = unbind(p.tenantId, r.secret_id, r.version, r.plaintext as string);
          versions[r.name] = r.version;
        }
        break;
      }
      await audit.record(
        auditEvent(ctx, {
          action: 'bundles.read',
          outcome: 'allowed',
          resource: `${kind}/${owner}`,
          details: {
            count: Object.keys(versions).length,
            secrets: Object.entries(versions)
              .map(([n, v]) => `${n}@${v}`)
              .join(','),
          },
        }),
      );
      return { values, versions };
    },

    /** All or nothing: every compare-and-set and format must hold, or nothing is written and every failure is named. */
    async writeBundle(
      ctx: RequestContext,
      kind: SecretKind,
      owner: string,
      body: BundleWriteRequest,
    ): Promise<BundleWriteResponse> {
      const p = principalOf(ctx);
      const sets = Object.entries(body.set ?? {});
      const deletes = body.delete ?? [];
      const denied: ErrorIssue[] = [
        ...sets
          .filter(([n]) => !allowed(p, 'secrets.write', `${kind}/${owner}/${n}`))
          .map(([n]) => ({ path: `body.set.${n}`, message: 'no write capability' })),
        ...deletes
          .filter((n) => !allowed(p, 'secrets.delete', `${kind}/${owner}/${n}`))
          .map((n) => ({ path: `body.delete.${n}`, message: 'no delete capability' })),
      ];
      if (denied.length > 0)
        throw new AppError('forbidden', 'this identity may not change every secret in the bundle', denied);
      for (const [n, s] of sets) {
        writer.checkSize(s.value, `body.set.${n}.value`);
        await writer.checkNewFormat(s.format, `body.set.${n}.format`);
      }
      return writer.withFreshKeys(p.tenantId, (keySet) =>
        db.withTenant(p.tenantId, async (tx) => {
          const events: AuditEvent[] = [];
          const names = [...sets.map(([n]) => n), ...deletes].sort();
          const locked = new Map((await secrets.lockMany(p.tenantId, kind, owner, names, tx)).map((r) => [r.name, r]));
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
          const changes: SecretEvent[] = [];
          for (const [name, s] of sets) {
            const plan = plans.get(name) as { create: boolean; version: number };
            const applied = await writer.applyWrite(
              p.identityId,
              p.tenantId,
              { kind, owner, name },
              locked.get(name),
              s,
              plan,
              keySet,
              tx,
            );
            if (applied === 'raced') throw conflict(`${kind}/${owner}/${name} was created concurrently; retry`);
            versions[name] = plan.version;
            changes.push(written(p.tenantId, pathOf(applied.row), plan.version, applied.created));
            events.push(writer.writeEvent(ctx, applied.row, plan.version, keySet, s.value, applied.created, 'bundle'));
          }
          for (const name of deletes) {
            const row = locked.get(name) as SecretRow;
            await secrets.update(p.tenantId, row.id, { deletedAt: new Date(), deletedBy: p.identityId }, tx);
            await secrets.schedule(p.tenantId, row.id, null, false, tx);
            versions[name] = null;
            changes.push(deleted(p.tenantId, pathOf(row), row.currentVersion, false));
            events.push(
              auditEvent(ctx, {
                action: 'secrets.delete',
                outcome: 'allowed',
                resource: pathOf(row),
                version: row.currentVersion,
                details: { via: 'bundle' },
              }),
            );
          }
          await audit.appendInTx(tx, events);
          await deps.webhooks.enqueueManyInTx(p.tenantId, changes, tx);
          return { versions };
        }),
      );
    },
  };
}

export type SecretService = ReturnType<typeof secretService>;
