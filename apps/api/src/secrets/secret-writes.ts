import type { RotationPolicy, SecretClass, SecretFormat, SecretMetadata, Strategy } from '@coffer/contracts';
import { auditEvent } from '../audit/audit.events.ts';
import type { AuditEvent } from '../audit/audit.types.ts';
import { newId } from '../crypto/ids.ts';
import { TenantKeyCache, type TenantKeySet } from '../crypto/tenant-key-cache.ts';
import type { Database, Tx } from '../db/database.ts';
import { pgErrorCode } from '../db/pg-errors.ts';
import { type AppError, conflict } from '../errors/app-error.ts';
import type { RequestContext } from '../http/request-context.ts';
import { checkFormat } from './formats.ts';
import type { SecretPath, SecretQueries, SecretRow } from './secrets.queries.ts';
import { invalidPattern, type NewPattern, validateWrite, type WriteRequest } from './write-validation.ts';

/** The pieces every path that writes a secret version shares: secrets CRUD, bundles, rotation and the scheduler. */

export const pathOf = (p: Pick<SecretPath, 'kind' | 'owner' | 'name'>): string => `${p.kind}/${p.owner}/${p.name}`;

export const DEFAULT_GRACE_HOURS = 24;

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
    rotation:
      row.rotationIntervalDays !== null
        ? {
            intervalDays: row.rotationIntervalDays,
            graceHours: row.rotationGraceHours ?? DEFAULT_GRACE_HOURS,
            ...(row.generator ? { generator: row.generator as NonNullable<RotationPolicy['generator']> } : {}),
          }
        : null,
    lastRotatedAt: row.lastRotatedAt?.toISOString() ?? null,
    nextRotationAt: row.nextRotationAt?.toISOString() ?? null,
    class: row.class ?? null,
    strategy: (row.strategy ?? null) as Strategy | null,
    ownerTeam: row.ownerTeam ?? null,
    contact: row.contact ?? null,
  };
}

/** The deployment metadata a PUT or PATCH sets: only the fields it names (null clears one). */
export interface DeploymentMetadataInput {
  class?: SecretClass | null | undefined;
  strategy?: Strategy | null | undefined;
  ownerTeam?: string | null | undefined;
  contact?: string | null | undefined;
}

export function deploymentMetadataColumns(input: DeploymentMetadataInput) {
  return {
    ...(input.class !== undefined ? { class: input.class } : {}),
    ...(input.strategy !== undefined ? { strategy: input.strategy as Record<string, unknown> | null } : {}),
    ...(input.ownerTeam !== undefined ? { ownerTeam: input.ownerTeam } : {}),
    ...(input.contact !== undefined ? { contact: input.contact } : {}),
  };
}

/** The columns a rotation policy sets, with the next due date counted from the last rotation (or now). */
export function rotationColumns(policy: RotationPolicy | null, lastRotatedAt: Date | null, now = new Date()) {
  if (!policy) {
    return { rotationIntervalDays: null, rotationGraceHours: null, generator: null, nextRotationAt: null };
  }
  const from = lastRotatedAt ?? now;
  return {
    rotationIntervalDays: policy.intervalDays,
    rotationGraceHours: policy.graceHours,
    generator: policy.generator ?? null,
    nextRotationAt: new Date(from.getTime() + policy.intervalDays * 86_400_000),
  };
}

export interface WriteInput extends DeploymentMetadataInput {
  value: string;
  ifVersion?: number | undefined;
  format?: SecretFormat | null | undefined;
  description?: string | null | undefined;
  tags?: string[] | undefined;
  expiresAt?: string | null | undefined;
  rotation?: RotationPolicy | null | undefined;
}

export type Plan = { ok: true; create: boolean; version: number } | { ok: false; message: string };

/** Compare-and-set and soft-delete rules for one write, given the locked row (or none). */
export function planWrite(row: SecretRow | undefined, ifVersion: number | undefined): Plan {
  if (row?.deletedAt) return { ok: false, message: 'the secret is deleted: restore it or purge it first' };
  if (!row) {
    if (ifVersion !== undefined && ifVersion !== 0) {
      return { ok: false, message: `the secret does not exist (ifVersion ${ifVersion})` };
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

/**
 * The secret row as a write leaves it, from the row it was planned on (none: a create, under a new id): the same
 * columns applyWrite sets. The database sets the timestamps; the row's MAC is made from this.
 */
export function nextRow(
  row: SecretRow | undefined,
  o: { tenantId: string; path: SecretPath; input: WriteInput; version: number; actorId: string | null },
): SecretRow {
  const { input } = o;
  const now = new Date();
  const rotation = input.rotation !== undefined ? rotationColumns(input.rotation, row?.lastRotatedAt ?? null) : {};
  const changed = {
    ...(input.description !== undefined ? { description: input.description } : {}),
    ...(input.tags !== undefined ? { tags: input.tags } : {}),
    ...(input.format !== undefined ? { format: input.format } : {}),
    ...(input.expiresAt !== undefined ? { expiresAt: input.expiresAt ? new Date(input.expiresAt) : null } : {}),
    ...rotation,
    ...deploymentMetadataColumns(input),
  };
  const base: SecretRow = row ?? {
    id: newId(),
    tenantId: o.tenantId,
    environment: o.path.environment,
    kind: o.path.kind,
    owner: o.path.owner,
    name: o.path.name,
    currentVersion: 0,
    description: null,
    tags: [],
    format: null,
    expiresAt: null,
    createdAt: now,
    updatedAt: now,
    createdBy: o.actorId,
    updatedBy: o.actorId,
    deletedAt: null,
    deletedBy: null,
    rotationIntervalDays: null,
    rotationGraceHours: null,
    generator: null,
    lastRotatedAt: null,
    nextRotationAt: null,
    mac: null,
    class: null,
    strategy: null,
    ownerTeam: null,
    contact: null,
  };
  return { ...base, ...changed, currentVersion: o.version, updatedBy: o.actorId, updatedAt: now };
}

/** Another writer created the secret between this write's lock and its insert. */
export class LostRace extends Error {
  constructor(readonly path: string) {
    super(`${path} was created concurrently`);
  }
}

export interface WriteTransactionDeps {
  db: Pick<Database, 'withTenant'>;
  keys: Pick<TenantKeyCache, 'get' | 'invalidate'>;
}

/**
 * The one retry of secret writes. Runs `fn` in a transaction of the tenant with its data keys, and runs it again from
 * the start, once for each, when a concurrent writer made the first try stale: another replica rotated the data key
 * (the database refuses the cached one with CF001: reload the keys), or another writer created the secret after it
 * was found missing (LostRace: this time it is locked). `lostRace` turns a lost race into the caller's error
 * instead (a bundle is decided on what its caller saw, so it does not retry).
 */
export async function writeTransaction<T>(
  deps: WriteTransactionDeps,
  tenantId: string,
  fn: (keySet: TenantKeySet, tx: Tx) => Promise<T>,
  lostRace?: (err: LostRace) => AppError,
): Promise<T> {
  const retried = { keys: false, race: false };
  for (;;) {
    const keySet = await deps.keys.get(tenantId);
    try {
      return await deps.db.withTenant(tenantId, (tx) => fn(keySet, tx));
    } catch (err) {
      if (pgErrorCode(err) === 'CF001' && !retried.keys) {
        retried.keys = true;
        deps.keys.invalidate(tenantId);
        continue;
      }
      if (!(err instanceof LostRace)) throw err;
      if (lostRace) throw lostRace(err);
      if (retried.race) throw conflict('the secret changed concurrently; retry');
      retried.race = true;
    }
  }
}

export interface SecretWriterDeps {
  secrets: SecretQueries;
  /** Unused: the data keys' retry moved to writeTransaction. Drop it when the composition root stops passing it. */
  keys?: Pick<TenantKeyCache, 'get' | 'invalidate'>;
  maxValueBytes: number;
  recoveryMs: number;
}

export function secretWriter(deps: SecretWriterDeps) {
  const { secrets } = deps;

  return {
    /** The request's checks that need no I/O (write-validation.ts), under this service's limits. */
    validate(req: WriteRequest): NewPattern[] {
      return validateWrite(req, deps.maxValueBytes);
    },

    /** Compiles the request's new custom patterns in the write's transaction; one that does not compile is a 400. */
    async compilePatterns(patterns: readonly NewPattern[], tx: Tx): Promise<void> {
      for (const { pattern, where } of patterns) {
        try {
          await secrets.compilePattern(pattern, tx);
        } catch (err) {
          if (pgErrorCode(err) !== '2201B') throw err;
          throw invalidPattern(where);
        }
      }
    },

    /** The failed rule for a value under its effective format, or null. Custom patterns run in PostgreSQL. */
    async formatProblem(format: SecretFormat | null, value: string, tx: Tx): Promise<string | null> {
      const r = checkFormat(format, value);
      if (!r.ok) return r.rule ?? 'format';
      if (r.pattern !== undefined && !(await secrets.matchesPattern(value, r.pattern, tx))) {
        return 'pattern: must match the format pattern';
      }
      return null;
    },

    /** Whether `row` is soft-deleted past its recovery window: erased for good before anything else uses its name. */
    windowClosed(row: SecretRow): boolean {
      return row.deletedAt !== null && row.deletedAt.getTime() <= Date.now() - deps.recoveryMs;
    },

    purgeEvent(ctx: RequestContext, tenantId: string, row: SecretRow): AuditEvent {
      return auditEvent(ctx, {
        tenantId,
        action: 'secrets.purge',
        outcome: 'allowed',
        resource: pathOf(row),
        environment: row.environment,
        details: { reason: 'recovery_window_closed' },
      });
    },

    /** A soft-deleted secret past its recovery window is erased for good before anything else touches its name. */
    async purgeIfWindowClosed(
      ctx: RequestContext,
      tenantId: string,
      row: SecretRow | undefined,
      tx: Tx,
      events: AuditEvent[],
    ): Promise<SecretRow | undefined> {
      if (!row || !this.windowClosed(row)) return row;
      await secrets.purge(tenantId, row.id, tx);
      events.push(this.purgeEvent(ctx, tenantId, row));
      return undefined;
    },

    /**
     * The secret row (created or updated) and its new version, encrypted by PostgreSQL under the tenant's
     * active data key. Throws LostRace when another writer created the secret since it was locked.
     */
    async applyWrite(
      actorId: string | null,
      tenantId: string,
      path: SecretPath,
      row: SecretRow | undefined,
      input: WriteInput,
      plan: { create: boolean; version: number },
      keySet: TenantKeySet,
      tx: Tx,
      extra: Partial<Omit<SecretRow, 'id' | 'tenantId'>> = {},
      /** The new version's own columns: the deployment it was generated for. */
      version?: { deploymentId?: string | undefined },
    ): Promise<{ row: SecretRow; created: boolean }> {
      let target = row;
      const rotation = input.rotation !== undefined ? rotationColumns(input.rotation, row?.lastRotatedAt ?? null) : {};
      if (plan.create) {
        target = await secrets.insertSecret(
          tenantId,
          {
            id: newId(),
            environment: path.environment,
            kind: path.kind,
            owner: path.owner,
            name: path.name,
            currentVersion: 1,
            description: input.description ?? null,
            tags: input.tags ?? [],
            format: input.format ?? null,
            expiresAt: input.expiresAt ? new Date(input.expiresAt) : null,
            createdBy: actorId,
            updatedBy: actorId,
            ...rotation,
            ...deploymentMetadataColumns(input),
            ...extra,
          },
          tx,
        );
        if (!target) throw new LostRace(pathOf(path));
      }
      const secret = target as SecretRow;
      await secrets.insertVersion(
        tenantId,
        {
          secretId: secret.id,
          path,
          version: plan.version,
          value: input.value,
          dekHex: keySet.activeKey,
          dekVersion: keySet.activeVersion,
          createdBy: actorId,
          fingerprint: TenantKeyCache.fingerprint(keySet, input.value),
          deploymentId: version?.deploymentId,
        },
        tx,
      );
      let result = secret;
      if (!plan.create) {
        result = await secrets.update(
          tenantId,
          secret.id,
          {
            currentVersion: plan.version,
            updatedBy: actorId,
            ...(input.description !== undefined ? { description: input.description } : {}),
            ...(input.tags !== undefined ? { tags: input.tags } : {}),
            ...(input.format !== undefined ? { format: input.format } : {}),
            ...(input.expiresAt !== undefined ? { expiresAt: input.expiresAt ? new Date(input.expiresAt) : null } : {}),
            ...rotation,
            ...deploymentMetadataColumns(input),
            ...extra,
          },
          tx,
        );
      }
      if (input.rotation !== undefined || extra.nextRotationAt !== undefined)
        await this.syncSchedule(tenantId, result, tx);
      return { row: result, created: plan.create };
    },

    syncSchedule(tenantId: string, row: SecretRow, tx: Tx): Promise<void> {
      return secrets.schedule(tenantId, row.id, row.nextRotationAt, row.generator !== null, tx);
    },

    writeEvent(
      ctx: RequestContext,
      row: SecretRow,
      version: number,
      keySet: TenantKeySet,
      value: string,
      created: boolean,
      via?: string,
      more: AuditEvent['details'] = {},
    ): AuditEvent {
      return auditEvent(ctx, {
        tenantId: row.tenantId,
        action: 'secrets.write',
        outcome: 'allowed',
        resource: pathOf(row),
        environment: row.environment,
        version,
        fingerprint: TenantKeyCache.fingerprint(keySet, value),
        details: { created, ...(via ? { via } : {}), ...more },
      });
    },
  };
}

export type SecretWriter = ReturnType<typeof secretWriter>;
