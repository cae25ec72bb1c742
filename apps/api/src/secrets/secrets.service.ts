import type {
  Action,
  Bundle,
  BundleWriteRequest,
  BundleWriteResponse,
  ErrorIssue,
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
import { newId } from '../crypto/ids.ts';
import { TenantKeyCache as KeyCache, type TenantKeyCache, type TenantKeySet } from '../crypto/tenant-keys.ts';
import type { Database, Tx } from '../db/database.ts';
import { pgErrorCode } from '../db/pg-errors.ts';
import { AppError, conflict, forbidden, notFound } from '../errors/app-error.ts';
import { decodeCursor, encodeCursor } from '../http/cursor.ts';
import { checkFormat } from './formats.ts';
import { bindingLine, type ReadRow, type SecretPath, type SecretQueries, type SecretRow } from './secrets.queries.ts';

export interface SecretServiceDeps {
  db: Pick<Database, 'withTenant'>;
  secrets: SecretQueries;
  keys: Pick<TenantKeyCache, 'get' | 'invalidate'>;
  audit: AuditSink;
  /** Largest value, in UTF-8 bytes. */
  maxValueBytes: number;
  /** How long a soft-deleted secret can be restored. */
  recoveryMs: number;
}

export const pathOf = (p: SecretPath): string => `${p.kind}/${p.owner}/${p.name}`;

const integrityError = () =>
  new AppError('integrity_error', 'a stored ciphertext failed its integrity check; the incident was recorded');

export function toMetadata(row: SecretRow): SecretMetadata {
  return {
    kind: row.kind,
    owner: row.owner,
    name: row.name,
    version: row.currentVersion,
    description: row.description,
    tags: row.tags,
    format: (row.format ?? null) as SecretFormat | null,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
    expiresAt: row.expiresAt?.toISOString() ?? null,
    createdBy: row.createdBy,
  };
}

/** Decided by the one authorization function; a refusal is a 403 that names the missing capability. */
function requireAllowed(p: Principal, action: Action, path: string): void {
  const d = authorize(p, action, path);
  if (!d.allowed) throw forbidden(d.reason);
}

const allowed = (p: Principal, action: Action, path: string): boolean => authorize(p, action, path).allowed;

interface WriteInput {
  value: string;
  ifVersion?: number | undefined;
  format?: SecretFormat | null | undefined;
  description?: string | null | undefined;
  tags?: string[] | undefined;
  expiresAt?: string | null | undefined;
}

type Plan = { ok: true; create: boolean; version: number } | { ok: false; message: string };

/** Compare-and-set and soft-delete rules for one write, given the locked row (or none). */
function planWrite(row: SecretRow | undefined, ifVersion: number | undefined): Plan {
  if (row?.deletedAt) return { ok: false, message: 'the secret is deleted: restore it or purge it first' };
  if (!row) {
    if (ifVersion !== undefined && ifVersion !== 0) {
      return { ok: false, message: `the secret does not exist (ifVersion ${ifVersion} expected version ${ifVersion})` };
    }
    return { ok: true, create: true, version: 1 };
  }
  if (ifVersion === 0)
    return { ok: false, message: `the secret already exists (current version ${row.currentVersion})` };
  if (ifVersion !== undefined && ifVersion !== row.currentVersion) {
    return { ok: false, message: `the current version is ${row.currentVersion}, not ${ifVersion}` };
  }
  return { ok: true, create: false, version: row.currentVersion + 1 };
}

/** Secrets of one tenant: the rules of reading, writing, versioning and deleting, each with its audit event. */
export function secretService(deps: SecretServiceDeps) {
  const { db, secrets, keys, audit } = deps;

  /** Validates the value against its effective format; returns the failed rule, or null. */
  async function formatProblem(format: SecretFormat | null, value: string): Promise<string | null> {
    const r = checkFormat(format, value);
    if (!r.ok) return r.rule ?? 'format';
    if (r.pattern !== undefined && !(await secrets.matchesPattern(value, r.pattern))) {
      return 'pattern: must match the format pattern';
    }
    return null;
  }

  function checkSize(value: string, where: string): void {
    const bytes = Buffer.byteLength(value, 'utf8');
    if (bytes > deps.maxValueBytes) {
      throw new AppError('payload_too_large', `the value is ${bytes} bytes; the limit is ${deps.maxValueBytes}`, [
        { path: where, message: `must be at most ${deps.maxValueBytes} bytes` },
      ]);
    }
  }

  async function checkNewFormat(format: SecretFormat | null | undefined, where: string): Promise<void> {
    if (format && typeof format === 'object' && format.pattern !== undefined) {
      try {
        await secrets.checkPattern(format.pattern);
      } catch (err) {
        if (pgErrorCode(err) === '2201B') {
          throw new AppError('validation_failed', 'the format pattern is not a valid regular expression', [
            { path: `${where}.pattern`, message: 'must be a valid PostgreSQL (POSIX ARE) regular expression' },
          ]);
        }
        throw err;
      }
    }
  }

  function checkExpiry(expiresAt: string | null | undefined): void {
    if (expiresAt && Date.parse(expiresAt) <= Date.now()) {
      throw new AppError('validation_failed', 'expiresAt must be in the future', [
        { path: 'body.expiresAt', message: 'must be in the future' },
      ]);
    }
  }

  /** A soft-deleted secret past its recovery window is erased for good before anything else touches its name. */
  async function purgeIfWindowClosed(
    tenantId: string,
    row: SecretRow | undefined,
    tx: Tx,
    events: AuditEvent[],
    ctx: RequestContext,
  ): Promise<SecretRow | undefined> {
    if (!row?.deletedAt || row.deletedAt.getTime() > Date.now() - deps.recoveryMs) return row;
    await secrets.purge(tenantId, row.id, tx);
    events.push(
      auditEvent(ctx, {
        action: 'secrets.purge',
        outcome: 'allowed',
        resource: pathOf(row),
        details: { reason: 'recovery_window_closed' },
      }),
    );
    return undefined;
  }

  /**
   * Applies one planned write in the transaction: the secret row (created or updated) and its new version,
   * encrypted by PostgreSQL under the tenant's active data key.
   */
  async function applyWrite(
    ctx: RequestContext,
    tenantId: string,
    path: SecretPath,
    row: SecretRow | undefined,
    input: WriteInput,
    plan: { create: boolean; version: number },
    keySet: TenantKeySet,
    tx: Tx,
  ): Promise<{ row: SecretRow; created: boolean } | 'raced'> {
    const actor = principalOf(ctx).identityId;
    let target = row;
    if (plan.create) {
      target = await secrets.insertSecret(
        tenantId,
        {
          id: newId(),
          kind: path.kind,
          owner: path.owner,
          name: path.name,
          currentVersion: 1,
          description: input.description ?? null,
          tags: input.tags ?? [],
          format: input.format ?? null,
          expiresAt: input.expiresAt ? new Date(input.expiresAt) : null,
          createdBy: actor,
          updatedBy: actor,
        },
        tx,
      );
      if (!target) return 'raced';
    }
    const secret = target as SecretRow;
    await secrets.insertVersion(
      tenantId,
      {
        secretId: secret.id,
        version: plan.version,
        value: input.value,
        dekHex: keySet.activeKey,
        dekVersion: keySet.activeVersion,
        createdBy: actor,
      },
      tx,
    );
    if (plan.create) return { row: secret, created: true };
    const updated = await secrets.update(
      tenantId,
      secret.id,
      {
        currentVersion: plan.version,
        updatedBy: actor,
        ...(input.description !== undefined ? { description: input.description } : {}),
        ...(input.tags !== undefined ? { tags: input.tags } : {}),
        ...(input.format !== undefined ? { format: input.format } : {}),
        ...(input.expiresAt !== undefined ? { expiresAt: input.expiresAt ? new Date(input.expiresAt) : null } : {}),
      },
      tx,
    );
    return { row: updated, created: false };
  }

  function writeEvent(
    ctx: RequestContext,
    row: SecretRow,
    version: number,
    keySet: TenantKeySet,
    value: string,
    created: boolean,
    via?: string,
  ): AuditEvent {
    return auditEvent(ctx, {
      action: 'secrets.write',
      outcome: 'allowed',
      resource: pathOf(row),
      version,
      fingerprint: KeyCache.fingerprint(keySet, value),
      details: { created, ...(via ? { via } : {}) },
    });
  }

  /** Decrypted plaintext → value, after checking that its binding line names this tenant, secret and version. */
  function unbind(tenantId: string, secretId: string, version: number, plaintext: string): string {
    const binding = bindingLine(tenantId, secretId, version);
    if (!plaintext.startsWith(binding)) throw integrityError();
    return plaintext.slice(binding.length);
  }

  async function withIntegrity<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      // pgcrypto: "Wrong key or corrupt data" and friends.
      if (pgErrorCode(err) === '39000') throw integrityError();
      throw err;
    }
  }

  return {
    async put(
      ctx: RequestContext,
      path: SecretPath,
      body: PutSecretRequest,
    ): Promise<{ created: boolean; metadata: SecretMetadata }> {
      const p = principalOf(ctx);
      requireAllowed(p, 'secrets.write', pathOf(path));
      checkSize(body.value, 'body.value');
      checkExpiry(body.expiresAt);
      await checkNewFormat(body.format, 'body.format');
      const keySet = await keys.get(p.tenantId);
      const result = await db.withTenant(p.tenantId, async (tx) => {
        const events: AuditEvent[] = [];
        for (let attempt = 0; attempt < 2; attempt++) {
          const row = await purgeIfWindowClosed(p.tenantId, await secrets.lock(p.tenantId, path, tx), tx, events, ctx);
          const plan = planWrite(row, body.ifVersion);
          if (!plan.ok) throw conflict(plan.message);
          const format = body.format !== undefined ? body.format : ((row?.format ?? null) as SecretFormat | null);
          const problem = await formatProblem(format, body.value);
          if (problem) {
            throw new AppError('unprocessable', `the value does not satisfy the secret's format (${problem})`, [
              { path: 'body.value', message: problem },
            ]);
          }
          const applied = await applyWrite(ctx, p.tenantId, path, row, body, plan, keySet, tx);
          if (applied === 'raced') continue; // created by a concurrent writer a moment ago: decide again
          events.push(writeEvent(ctx, applied.row, plan.version, keySet, body.value, applied.created));
          await audit.appendInTx(tx, events);
          return applied;
        }
        throw conflict('the secret changed concurrently; retry');
      });
      return { created: result.created, metadata: toMetadata(result.row) };
    },

    async get(ctx: RequestContext, path: SecretPath, version: number | undefined): Promise<SecretWithValue> {
      const p = principalOf(ctx);
      requireAllowed(p, 'secrets.read', pathOf(path));
      let keySet = await keys.get(p.tenantId);
      let row: ReadRow | undefined;
      for (let attempt = 0; ; attempt++) {
        const set = keySet;
        row = await withIntegrity(() => secrets.read(p.tenantId, path, version ?? null, set.sqlKeys));
        const keyMissing = row?.version != null && !row.destroyed && !row.expired && row.plaintext === null;
        if (!keyMissing) break;
        // Sealed under a data key this replica has not loaded yet (rotated elsewhere): reload once.
        if (attempt > 0) throw integrityError();
        keys.invalidate(p.tenantId);
        keySet = await keys.get(p.tenantId);
      }
      if (!row) throw notFound('secret');
      if (row.version === null) throw notFound(`version ${version} of the secret`);
      if (row.expired) throw new AppError('expired', `the secret expired at ${row.expires_at?.toISOString()}`);
      if (row.destroyed) throw new AppError('gone', `version ${row.version} was destroyed`);
      const value = unbind(p.tenantId, row.secret_id, row.version, row.plaintext as string);
      await audit.record(
        auditEvent(ctx, { action: 'secrets.read', outcome: 'allowed', resource: pathOf(path), version: row.version }),
      );
      return {
        kind: path.kind,
        owner: path.owner,
        name: path.name,
        version: row.version,
        description: row.description,
        tags: row.tags,
        format: (row.format ?? null) as SecretFormat | null,
        createdAt: row.created_at.toISOString(),
        updatedAt: row.updated_at.toISOString(),
        expiresAt: row.expires_at?.toISOString() ?? null,
        createdBy: row.created_by,
        value,
      };
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
      const cursor = decodeCursor(q.cursor, ['k', 'o', 'n'] as const);
      let after: SecretPath | undefined = cursor
        ? { kind: cursor.k as SecretKind, owner: cursor.o, name: cursor.n }
        : undefined;
      const items: SecretRow[] = [];
      let exhausted = false;
      // Services see only what they may list: keep reading pages until this one is full or the rows run out.
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
      const last = pageItems.at(-1);
      const more = items.length > q.limit || !exhausted;
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
        nextCursor: more && last ? encodeCursor({ k: last.kind, o: last.owner, n: last.name }) : null,
      };
    },

    async remove(ctx: RequestContext, path: SecretPath, purge: boolean): Promise<void> {
      const p = principalOf(ctx);
      requireAllowed(p, 'secrets.delete', pathOf(path));
      await db.withTenant(p.tenantId, async (tx) => {
        const row = await secrets.lock(p.tenantId, path, tx);
        if (!row || (row.deletedAt && !purge)) throw notFound('secret');
        if (purge) await secrets.purge(p.tenantId, row.id, tx);
        else await secrets.update(p.tenantId, row.id, { deletedAt: new Date(), deletedBy: p.identityId }, tx);
        await audit.appendInTx(tx, [
          auditEvent(ctx, {
            action: purge ? 'secrets.purge' : 'secrets.delete',
            outcome: 'allowed',
            resource: pathOf(path),
            version: row.currentVersion,
          }),
        ]);
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
        if (!(await purgeIfWindowClosed(p.tenantId, current, tx, events, ctx))) {
          await audit.appendInTx(tx, events);
          return null;
        }
        const restored = await secrets.update(
          p.tenantId,
          current.id,
          { deletedAt: null, deletedBy: null, updatedBy: p.identityId },
          tx,
        );
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
        if (version === row.currentVersion) {
          throw conflict('the current version cannot be destroyed: write a new version first');
        }
        if (!(await secrets.destroyVersion(p.tenantId, row.id, version, tx)))
          throw notFound(`version ${version} of the secret`);
        await audit.appendInTx(tx, [
          auditEvent(ctx, { action: 'secrets.destroy', outcome: 'allowed', resource: pathOf(path), version }),
        ]);
      });
    },

    async bundle(ctx: RequestContext, kind: SecretKind, owner: string): Promise<Bundle> {
      const p = principalOf(ctx);
      let names: string[] | null = null;
      if (p.role !== 'admin') {
        const all = await secrets.bundleNames(p.tenantId, kind, owner);
        names = all.filter((n) => allowed(p, 'secrets.read', `${kind}/${owner}/${n}`));
      }
      const values: Record<string, string> = {};
      const versions: Record<string, number> = {};
      if (names === null || names.length > 0) {
        let keySet = await keys.get(p.tenantId);
        for (let attempt = 0; ; attempt++) {
          const set = keySet;
          const rows = await withIntegrity(() => secrets.readBundle(p.tenantId, kind, owner, names, set.sqlKeys));
          if (rows.some((r) => r.plaintext === null)) {
            if (attempt > 0) throw integrityError();
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
        checkSize(s.value, `body.set.${n}.value`);
        await checkNewFormat(s.format, `body.set.${n}.format`);
      }
      const keySet = await keys.get(p.tenantId);
      return db.withTenant(p.tenantId, async (tx) => {
        const events: AuditEvent[] = [];
        const names = [...sets.map(([n]) => n), ...deletes].sort();
        const locked = new Map((await secrets.lockMany(p.tenantId, kind, owner, names, tx)).map((r) => [r.name, r]));
        for (const [name, row] of locked) {
          const kept = await purgeIfWindowClosed(p.tenantId, row, tx, events, ctx);
          if (!kept) locked.delete(name);
        }
        const conflicts: ErrorIssue[] = [];
        const unprocessable: ErrorIssue[] = [];
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
          const problem = await formatProblem(format, s.value);
          if (problem) unprocessable.push({ path: `body.set.${name}.value`, message: problem });
        }
        for (const name of deletes) {
          const row = locked.get(name);
          if (!row || row.deletedAt)
            conflicts.push({ path: `body.delete.${name}`, message: 'the secret does not exist' });
        }
        if (conflicts.length > 0)
          throw new AppError('conflict', 'the bundle was not applied: some secrets changed or do not exist', conflicts);
        if (unprocessable.length > 0) {
          throw new AppError(
            'unprocessable',
            'the bundle was not applied: some values do not satisfy their format',
            unprocessable,
          );
        }
        const versions: Record<string, number | null> = {};
        for (const [name, s] of sets) {
          const plan = plans.get(name) as { create: boolean; version: number };
          const applied = await applyWrite(
            ctx,
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
          events.push(writeEvent(ctx, applied.row, plan.version, keySet, s.value, applied.created, 'bundle'));
        }
        for (const name of deletes) {
          const row = locked.get(name) as SecretRow;
          await secrets.update(p.tenantId, row.id, { deletedAt: new Date(), deletedBy: p.identityId }, tx);
          versions[name] = null;
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
        return { versions };
      });
    },
  };
}

export type SecretService = ReturnType<typeof secretService>;
