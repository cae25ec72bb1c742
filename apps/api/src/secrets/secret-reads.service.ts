import {
  type Action,
  type Bundle,
  DEFAULT_ENVIRONMENT,
  type SecretKind,
  type SecretPage,
  type SecretVersions,
  type SecretWithValue,
} from '@coffer/contracts';
import { auditEvent } from '../audit/audit.events.ts';
import type { AuditSink } from '../audit/audit.sink.ts';
import { authorize, environmentHidden, mayAttempt } from '../auth/authorize.ts';
import { grantsOnEveryName } from '../auth/policy.ts';
import { type Principal, principalOf } from '../auth/principal.ts';
import type { RowMacs } from '../crypto/row-macs.ts';
import type { TenantKeyCache, TenantKeySet } from '../crypto/tenant-key-cache.ts';
import type { Database } from '../db/database.ts';
import { pgErrorCode } from '../db/pg-errors.ts';
import { environmentNotFound } from '../environments/environment-gate.ts';
import { AppError, forbidden, notFound, unauthorized } from '../errors/app-error.ts';
import type { CursorCodec } from '../http/cursor.ts';
import type { RequestContext } from '../http/request-context.ts';
import { bundleStep, type ReadStep, readStep, type WantedVersion } from './read-outcomes.ts';
import { pathOf, toMetadata } from './secret-writes.ts';
import {
  bindingLineLength,
  legacyBindingLine,
  type ReadRow,
  type SecretPath,
  type SecretQueries,
  type SecretRow,
} from './secrets.queries.ts';

export interface SecretReadDeps {
  db: Pick<Database, 'withTenant'>;
  /** Rebuilds a principal whose identity changed (a hot read's statement found a newer revision). */
  refreshPrincipal: (p: Principal) => Promise<Principal>;
  secrets: Pick<SecretQueries, 'read' | 'readBundle' | 'bundleNames' | 'list' | 'lock' | 'versions'>;
  keys: Pick<TenantKeyCache, 'get' | 'invalidate'>;
  audit: Pick<AuditSink, 'record' | 'appended'>;
  /** Seals list cursors: a scan may resume after a row the caller may not list, so it must not read the cursor. */
  cursors: CursorCodec;
  /** Checks the MACs over the columns that decided a read (current version, expiry, grace period, path). */
  macs: Pick<RowMacs, 'checkSecret' | 'checkVersion'>;
  /** Bundle reads for a deployment (`?deployment=`); without it such a read is refused. */
  deployments?: DeploymentReads;
}

/** What a bundle read for a deployment receives of one bundle, by its plan. */
export interface DeploymentBundlePlan {
  /** Names the plan injects: read at their current version. */
  current: string[];
  /** Names generated for the deployment: read at the deployment's own version. */
  pinned: { name: string; version: number }[];
}

/**
 * Bundle reads made for a deployment (`coffer run --deployment`): the deployment's plan for the bundle, and the
 * record of what it received. Implemented by the deployments module, which the secrets module does not import.
 */
export interface DeploymentReads {
  /** Throws the caller's error: no such deployment (404), revoked (410), another environment or bundle (422). */
  planFor(
    tenantId: string,
    deploymentId: string,
    environment: string,
    kind: SecretKind,
    owner: string,
  ): Promise<DeploymentBundlePlan>;
  received(
    ctx: RequestContext,
    deploymentId: string,
    rows: readonly { secretId: string; path: string; version: number; action: 'inject' | 'generate' }[],
  ): Promise<void>;
}

export const integrityError = () =>
  new AppError('integrity_error', 'a stored ciphertext failed its integrity check; the incident was recorded');

/** Actions that create: in an environment the caller cannot see, they fail as in one that does not exist. */
const CREATING: ReadonlySet<Action> = new Set<Action>(['secrets.write', 'bundles.write', 'intake.create']);

/**
 * Decided by the one authorization function; a refusal is a 403 that names the missing capability. In an
 * environment none of the caller's policies applies in, the answer is the one a missing secret (or, for a write,
 * a missing environment) gets: a 404 that does not confirm the environment exists.
 */
export function requireAllowed(p: Principal, action: Action, path: SecretPath): void {
  const d = authorize(p, action, pathOf(path), path.environment);
  if (d.allowed) return;
  if (d.hidden) throw CREATING.has(action) ? environmentNotFound(path.environment) : notFound('secret');
  throw forbidden(d.reason);
}

export const allowed = (p: Principal, action: Action, path: SecretPath): boolean =>
  authorize(p, action, pathOf(path), path.environment).allowed;

/** Decrypted plaintext → value, after checking that its binding line names this tenant, secret, version and path. */
export function unbind(
  tenantId: string,
  secretId: string,
  version: number,
  path: SecretPath,
  plaintext: string,
): string {
  const bound = bindingLineLength(plaintext, tenantId, secretId, version, path);
  if (bound >= 0) return plaintext.slice(bound);
  // Versions sealed before bindings named the path; the legacy line is built only for them.
  const legacy = legacyBindingLine(tenantId, secretId, version);
  if (plaintext.startsWith(legacy)) return plaintext.slice(legacy.length);
  throw integrityError();
}

/**
 * The columns of a secret row and of one of its versions that their MACs cover, as the read functions return them,
 * beside the row's id, current version and the version read (see RowMacIds).
 */
export interface RowMacColumns {
  expires_at: Date | null;
  served_until: Date | null;
  secret_mac: string | null;
  version_mac: string | null;
  class: SecretRow['class'];
  strategy: unknown;
  owner_team: string | null;
  contact: string | null;
  revoked_at: Date | null;
  deployment_id: string | null;
}

/**
 * Which secret, at which current version, and which of its versions is served. Passed apart from the row because
 * the read functions name them differently (a bundle's row has one `version`, its current one), so no caller copies
 * a row to rename a column.
 */
export interface RowMacIds {
  secretId: string;
  currentVersion: number;
  version: number;
}

/**
 * The MACs of the secret row and of the version a read is about to serve: coffer_app can rename a row, rewind its
 * current version, lift its expiry, extend a grace period, change what deployments do with it, un-revoke a version
 * or move it to another deployment, but not make the MACs that go with the new columns.
 */
export function checkRowMacs(
  macs: SecretReadDeps['macs'],
  tenantId: string,
  path: SecretPath,
  r: RowMacColumns,
  ids: RowMacIds,
): void {
  macs.checkSecret(r.secret_mac, {
    tenantId,
    id: ids.secretId,
    environment: path.environment,
    kind: path.kind,
    owner: path.owner,
    name: path.name,
    currentVersion: ids.currentVersion,
    expiresAt: r.expires_at,
    deleted: false,
    class: r.class ?? null,
    strategy: r.strategy ?? null,
    ownerTeam: r.owner_team ?? null,
    contact: r.contact ?? null,
  });
  macs.checkVersion(r.version_mac, {
    tenantId,
    secretId: ids.secretId,
    version: ids.version,
    servedUntil: r.served_until,
    revokedAt: r.revoked_at ?? null,
    deploymentId: r.deployment_id ?? null,
  });
}

/**
 * A read refused because its version is revoked is checked as a served one is: revoked_at alone decides that answer,
 * so a revocation coffer_app forged is an integrity incident, not a 410. (A lifted revocation leaves served_until in
 * the past, which was covered all along: that read is refused as rotated out, and the MAC is checked if coffer_app
 * extends the grace period as well.)
 */
function checkRefusal(macs: SecretReadDeps['macs'], tenantId: string, path: SecretPath, r: ReadRow): void {
  if (r.outcome === 'revoked' && r.version !== null) {
    checkRowMacs(macs, tenantId, path, r, {
      secretId: r.secret_id,
      currentVersion: r.current_version,
      version: r.version,
    });
  }
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

function metadataOf(tenantId: string, path: SecretPath, row: ReadRow): SecretRow {
  return {
    id: row.secret_id,
    tenantId,
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
    mac: row.secret_mac,
    class: row.class,
    strategy: row.strategy,
    ownerTeam: row.owner_team,
    contact: row.contact,
  };
}

interface Received {
  secretId: string;
  name: string;
  version: number;
  plaintext: string;
  action: 'inject' | 'generate';
}

/** Reading secrets: one value, a bundle, versions and lists, each with its audit event. */
export function secretReads(deps: SecretReadDeps) {
  const { db, secrets, keys, audit } = deps;

  /**
   * Reads until the database's outcome needs nothing reloaded. A changed identity is rebuilt once (then 401), and
   * keys another replica rotated are reloaded once (then the ciphertext is treated as corrupt).
   */
  async function untilFresh<T>(
    ctx: RequestContext,
    read: (p: Principal, keySet: TenantKeySet) => Promise<{ step: ReadStep; result: T }>,
  ): Promise<{ p: Principal; result: T }> {
    let p = principalOf(ctx);
    let keySet = await keys.get(p.tenantId);
    const reloaded = { identity: false, keys: false };
    for (;;) {
      const { step, result } = await read(p, keySet);
      if (step.next === 'value') return { p, result };
      if (reloaded[step.stale]) {
        throw step.stale === 'identity' ? unauthorized('the token is no longer valid: log in again') : integrityError();
      }
      reloaded[step.stale] = true;
      if (step.stale === 'identity') {
        p = await deps.refreshPrincipal(p);
        ctx.principal = p;
      } else {
        keys.invalidate(p.tenantId);
        keySet = await keys.get(p.tenantId);
      }
    }
  }

  /**
   * A bundle read for a deployment: of the names the caller may read, only what the deployment's plan injects (at
   * the current version) and what was generated for it (at its own version; a revoked one is 410). Stripped and
   * prompted names never travel. The read's audit event names the deployment, and the deployment records what it
   * received, so its record is exact.
   */
  async function deploymentBundle(
    ctx: RequestContext,
    environment: string,
    kind: SecretKind,
    owner: string,
    deploymentId: string,
  ): Promise<Bundle> {
    const reads = deps.deployments;
    if (!reads) throw notFound('deployment');
    const first = principalOf(ctx);
    // A service none of whose policies applies in the environment reads nothing there, and learns nothing of it.
    if (environmentHidden(first, environment)) throw notFound('deployment');
    const plan = await reads.planFor(first.tenantId, deploymentId, environment, kind, owner);
    const at = (name: string): SecretPath => ({ environment, kind, owner, name });
    const { p, result } = await untilFresh(ctx, async (caller, keySet) => {
      const readable = (n: string) => caller.role === 'admin' || allowed(caller, 'secrets.read', at(n));
      const current = plan.current.filter(readable);
      const rows = await withIntegrity(() =>
        secrets.readBundle(caller.tenantId, caller, environment, kind, owner, current, keySet.sqlKeys),
      );
      const step = bundleStep(rows);
      if (step.next !== 'value') return { step, result: null };
      // The injected names are read at their current version, like every bundle read: the row's current version.
      for (const r of rows) {
        checkRowMacs(deps.macs, caller.tenantId, at(r.name), r, {
          secretId: r.secret_id,
          currentVersion: r.version,
          version: r.version,
        });
      }
      const pinned: Received[] = [];
      for (const { name, version } of plan.pinned.filter((x) => readable(x.name))) {
        const r = await withIntegrity(() =>
          secrets.read(caller.tenantId, caller, at(name), version, keySet.sqlKeys, null),
        );
        checkRefusal(deps.macs, caller.tenantId, at(name), r);
        const s = readStep(r, version);
        if (s.next !== 'value') return { step: s, result: null };
        checkRowMacs(deps.macs, caller.tenantId, at(name), r, {
          secretId: r.secret_id,
          currentVersion: r.current_version,
          version,
        });
        pinned.push({ secretId: r.secret_id, name, version, plaintext: r.plaintext as string, action: 'generate' });
      }
      return {
        step,
        result: [
          ...rows.map(
            (r): Received => ({
              secretId: r.secret_id,
              name: r.name,
              version: r.version,
              plaintext: r.plaintext as string,
              action: 'inject',
            }),
          ),
          ...pinned,
        ],
      };
    });
    const values: Record<string, string> = Object.create(null);
    const versions: Record<string, number> = Object.create(null);
    const got = (result ?? []).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const r of got) {
      values[r.name] = unbind(p.tenantId, r.secretId, r.version, at(r.name), r.plaintext);
      versions[r.name] = r.version;
    }
    await audit.record(
      auditEvent(ctx, {
        action: 'bundles.read',
        outcome: 'allowed',
        resource: `${kind}/${owner}`,
        environment,
        details: {
          count: got.length,
          secrets: got.map((r) => `${r.name}@${r.version}`).join(','),
          deployment: deploymentId,
        },
      }),
    );
    await reads.received(
      ctx,
      deploymentId,
      got.map((r) => ({
        secretId: r.secretId,
        path: `${kind}/${owner}/${r.name}`,
        version: r.version,
        action: r.action,
      })),
    );
    return { values, versions };
  }

  return {
    async get(ctx: RequestContext, path: SecretPath, version: WantedVersion): Promise<SecretWithValue> {
      const where = pathOf(path);
      const first = principalOf(ctx);
      if (first.cached && !allowed(first, 'secrets.read', path)) {
        // A cached principal may carry policies that were widened since: refuse only on the current ones.
        ctx.principal = await deps.refreshPrincipal(first);
      }
      requireAllowed(principalOf(ctx), 'secrets.read', path);
      const {
        p,
        result: { r: row, event },
      } = await untilFresh(ctx, async (caller, keySet) => {
        requireAllowed(caller, 'secrets.read', path);
        // Made for each attempt: after a refresh the event names the principal as rebuilt. The statement appends it
        // only if it serves the read, with the version it served.
        const event = auditEvent(ctx, {
          action: 'secrets.read',
          outcome: 'allowed',
          resource: where,
          environment: path.environment,
        });
        const r = await withIntegrity(() =>
          secrets.read(caller.tenantId, caller, path, version, keySet.sqlKeys, event),
        );
        checkRefusal(deps.macs, caller.tenantId, path, r);
        return { step: readStep(r, version), result: { r, event } };
      });
      // readStep let only `ok` through: the version and its plaintext are there, and the event is in the chain.
      const readVersion = row.version as number;
      // Counted only (the statement wrote it, version and all): the count needs no copy with the version filled in.
      audit.appended([event]);
      checkRowMacs(deps.macs, p.tenantId, path, row, {
        secretId: row.secret_id,
        currentVersion: row.current_version,
        version: readVersion,
      });
      const value = unbind(p.tenantId, row.secret_id, readVersion, path, row.plaintext as string);
      // The metadata object itself, given the version read and the value: copying it by spread cost more than the
      // mapping that made it.
      const body = toMetadata(metadataOf(p.tenantId, path, row));
      body.version = readVersion;
      return Object.assign(body, { value });
    },

    async versions(ctx: RequestContext, path: SecretPath): Promise<SecretVersions> {
      const p = principalOf(ctx);
      const where = pathOf(path);
      requireAllowed(p, 'secrets.versions', path);
      const items = await db.withTenant(p.tenantId, async (tx) => {
        const row = await secrets.lock(p.tenantId, path, tx);
        if (!row || row.deletedAt) throw notFound('secret');
        const rows = await secrets.versions(p.tenantId, row.id, tx);
        return rows.map((v) => ({
          version: v.version,
          createdAt: v.createdAt.toISOString(),
          createdBy: v.createdBy,
          createdByName: v.createdByName,
          destroyedAt: v.destroyedAt?.toISOString() ?? null,
          servedUntil: v.servedUntil?.toISOString() ?? null,
          revokedAt: v.revokedAt?.toISOString() ?? null,
          deployment: v.deploymentId,
          state: v.destroyed
            ? ('destroyed' as const)
            : v.version === row.currentVersion
              ? ('current' as const)
              : v.version === row.currentVersion - 1
                ? ('previous' as const)
                : ('old' as const),
        }));
      });
      await audit.record(
        auditEvent(ctx, {
          action: 'secrets.versions',
          outcome: 'allowed',
          resource: where,
          environment: path.environment,
        }),
      );
      return { items: items.reverse() };
    },

    async list(
      ctx: RequestContext,
      q: {
        env?: string | undefined;
        kind?: SecretKind | undefined;
        owner?: string | undefined;
        prefix?: string | undefined;
        deleted?: boolean | undefined;
        limit: number;
        cursor?: string | undefined;
      },
    ): Promise<SecretPage> {
      const p = principalOf(ctx);
      const environment = q.env ?? DEFAULT_ENVIRONMENT;
      const scope = {
        route: 'secrets.list',
        tenantId: p.tenantId,
        identityId: p.identityId,
        // `default` is spelt as before environments existed, so cursors handed out then still open. A deleted listing
        // walks other rows than a live one: a cursor of one must not resume the other. Absent (not 0) for a live
        // listing, so its cursors keep the scope they had before deleted= existed.
        filters: {
          kind: q.kind,
          owner: q.owner,
          prefix: q.prefix,
          deleted: q.deleted ? 1 : undefined,
          ...(environment !== DEFAULT_ENVIRONMENT ? { env: environment } : {}),
        },
      };
      const cursor = deps.cursors.open(scope, q.cursor, ['k', 'o', 'n'] as const);
      let after: Omit<SecretPath, 'environment'> | undefined = cursor
        ? { kind: cursor.k as SecretKind, owner: cursor.o, name: cursor.n }
        : undefined;
      const items: SecretRow[] = [];
      let exhausted = false;
      // Services see only what they may list: keep reading until this page is full or the rows run out.
      // In an environment the caller cannot see there is nothing to list (and nothing to scan for).
      exhausted = environmentHidden(p, environment);
      for (let round = 0; round < 20 && items.length <= q.limit && !exhausted; round++) {
        const batch = await secrets.list(p.tenantId, environment, q, after, q.limit + 1);
        exhausted = batch.length < q.limit + 1;
        for (const row of batch) {
          if (allowed(p, 'secrets.list', row)) items.push(row);
          after = row;
          if (items.length > q.limit) break;
        }
      }
      const pageItems = items.slice(0, q.limit);
      // A full page continues after its last item; a scan that ran out of budget continues after the last row
      // it looked at (so a service whose secrets sort late still reaches them, page by page).
      const resumeAt: Omit<SecretPath, 'environment'> | undefined =
        items.length > q.limit ? pageItems.at(-1) : exhausted ? undefined : after;
      await audit.record(
        auditEvent(ctx, {
          action: 'secrets.list',
          outcome: 'allowed',
          resource: [q.kind, q.owner, q.prefix].filter((x) => x !== undefined).join('/') || null,
          environment,
          details: { count: pageItems.length, ...(q.deleted ? { deleted: true } : {}) },
        }),
      );
      return {
        items: pageItems.map(toMetadata),
        nextCursor: resumeAt
          ? deps.cursors.seal(scope, { k: resumeAt.kind, o: resumeAt.owner, n: resumeAt.name })
          : null,
      };
    },

    async bundle(
      ctx: RequestContext,
      environment: string,
      kind: SecretKind,
      owner: string,
      deploymentId?: string,
    ): Promise<Bundle> {
      if (deploymentId !== undefined) return deploymentBundle(ctx, environment, kind, owner, deploymentId);
      const { p, result: rows } = await untilFresh(ctx, async (caller, keySet) => {
        // Admins read every name, so the list of names is only fetched to filter a service's view.
        let names: string[] | null = null;
        // A service whose policies grant read on every name of the bundle reads them all in one round trip, as an
        // admin does; any other is filtered name by name.
        const everyName =
          caller.role === 'service' &&
          mayAttempt(caller, 'secrets.read') &&
          grantsOnEveryName(caller.policies, 'read', kind, owner, environment);
        if (caller.role !== 'admin' && !everyName) {
          // In an environment the caller cannot see, no name is readable: nothing to look up.
          const all = environmentHidden(caller, environment)
            ? []
            : await secrets.bundleNames(caller.tenantId, environment, kind, owner);
          // Even with no readable name the read goes ahead: its statement re-checks a cached identity.
          names = all.filter((n) => allowed(caller, 'secrets.read', { environment, kind, owner, name: n }));
        }
        const r = await withIntegrity(() =>
          secrets.readBundle(caller.tenantId, caller, environment, kind, owner, names, keySet.sqlKeys),
        );
        return { step: bundleStep(r), result: r };
      });
      // Names are keys: no prototype, so a name such as `constructor` is only ever an own entry.
      const values: Record<string, string> = Object.create(null);
      const versions: Record<string, number> = Object.create(null);
      // What the event names, name@version in the rows' order (by name); a path is unique, so one entry per name.
      const served: string[] = [];
      for (const r of rows) {
        const path = { environment, kind, owner, name: r.name };
        // A bundle serves current versions only: the row's current version is the version read.
        checkRowMacs(deps.macs, p.tenantId, path, r, {
          secretId: r.secret_id,
          currentVersion: r.version,
          version: r.version,
        });
        values[r.name] = unbind(p.tenantId, r.secret_id, r.version, path, r.plaintext as string);
        versions[r.name] = r.version;
        served.push(`${r.name}@${r.version}`);
      }
      await audit.record(
        auditEvent(ctx, {
          action: 'bundles.read',
          outcome: 'allowed',
          resource: `${kind}/${owner}`,
          environment,
          details: {
            count: served.length,
            secrets: served.join(','),
          },
        }),
      );
      return { values, versions };
    },
  };
}

export type SecretReads = ReturnType<typeof secretReads>;
