import {
  type CreateEnvironmentRequest,
  DEFAULT_ENVIRONMENT,
  type Environment,
  type EnvironmentDiff,
  type EnvironmentDiffItem,
  type EnvironmentList,
  type ErrorIssue,
  type PromoteRequest,
  type PromoteResponse,
  type SecretFormat,
  type SecretKind,
  type UpdateEnvironmentRequest,
} from '@coffer/contracts';
import { auditEvent } from '../audit/audit.events.ts';
import type { AuditSink } from '../audit/audit.sink.ts';
import type { AuditEvent } from '../audit/audit.types.ts';
import { environmentHidden } from '../auth/authorize.ts';
import { type Principal, principalOf } from '../auth/principal.ts';
import { TenantKeyCache, type TenantKeySet } from '../crypto/tenant-key-cache.ts';
import type { Database } from '../db/database.ts';
import { AppError, conflict } from '../errors/app-error.ts';
import type { RequestContext } from '../http/request-context.ts';
import { type ChangeNotice, notices, recordChange } from '../secrets/secret-changes.ts';
import { allowed, checkRowMacs, integrityError, type SecretReadDeps, unbind } from '../secrets/secret-reads.service.ts';
import { pathOf, planWrite, type SecretWriter, writeTransaction } from '../secrets/secret-writes.ts';
import type { SecretQueries } from '../secrets/secrets.queries.ts';
import type { WebhookQueries } from '../webhooks/webhooks.queries.ts';
import { environmentNotFound } from './environment-gate.ts';
import { type CurrentRow, currentRows, type EnvironmentQueries, type EnvironmentRow } from './environments.queries.ts';

export interface EnvironmentServiceDeps {
  db: Pick<Database, 'withTenant'>;
  queries: EnvironmentQueries;
  secrets: Pick<SecretQueries, 'lockMany'>;
  keys: Pick<TenantKeyCache, 'get' | 'invalidate'>;
  writer: SecretWriter;
  audit: Pick<AuditSink, 'record' | 'appendInTx'>;
  webhooks: Pick<WebhookQueries, 'enqueueManyInTx'>;
  /** Checks the row MACs of every version a diff decrypts or a promotion copies, as reads do. */
  macs: SecretReadDeps['macs'];
}

export function toEnvironment(r: EnvironmentRow): Environment {
  return {
    slug: r.slug,
    name: r.name,
    protected: r.protected,
    default: r.slug === DEFAULT_ENVIRONMENT,
    createdAt: r.createdAt.toISOString(),
    updatedAt: r.updatedAt.toISOString(),
  };
}

const sees = (p: Principal, slug: string) => !environmentHidden(p, slug);

function rotationOf(r: CurrentRow): string {
  return JSON.stringify([r.rotation_interval_days, r.rotation_grace_hours, r.generator ?? null]);
}

/**
 * Environments: their list and lifecycle, a diff of two that compares keyed fingerprints and never a value, and
 * promotion, which copies current values from one to another in one transaction with a compare-and-set per name.
 */
export function environmentService(deps: EnvironmentServiceDeps) {
  const { db, queries, audit } = deps;

  const pathOfRow = (r: CurrentRow, kind: SecretKind, owner: string) => ({
    environment: r.environment,
    kind,
    owner,
    name: r.name,
  });

  /** A row's current value, once its row MACs hold and its binding line names this secret, version and path. */
  function currentValue(tenantId: string, r: CurrentRow, kind: SecretKind, owner: string): string {
    checkRowMacs(deps.macs, tenantId, pathOfRow(r, kind, owner), r, {
      secretId: r.id,
      currentVersion: r.current_version,
      version: r.current_version,
    });
    if (r.key_missing || r.plaintext === null) throw integrityError();
    return unbind(tenantId, r.id, r.current_version, pathOfRow(r, kind, owner), r.plaintext);
  }

  /** A value's keyed fingerprint; a tenant made before fingerprint keys existed compares values themselves. */
  const fingerprintOfValue = (keySet: TenantKeySet, value: string) =>
    TenantKeyCache.fingerprint(keySet, value) ?? `value:${value}`;

  /**
   * For the diff: the fingerprint stored with the version, or one computed from its value (versions written before
   * fingerprints were stored). Promotion never trusts a stored fingerprint: it compares what it decrypted.
   */
  function fingerprintOf(tenantId: string, keySet: TenantKeySet, r: CurrentRow, kind: SecretKind, owner: string) {
    if (r.fingerprint !== null) return r.fingerprint;
    return fingerprintOfValue(keySet, currentValue(tenantId, r, kind, owner));
  }

  async function existing(tenantId: string, slugs: string[]): Promise<void> {
    const rows = await queries.list(tenantId);
    const known = new Set(rows.map((r) => r.slug));
    for (const slug of slugs) if (!known.has(slug)) throw environmentNotFound(slug);
  }

  return {
    async list(ctx: RequestContext): Promise<EnvironmentList> {
      const p = principalOf(ctx);
      const rows = await queries.list(p.tenantId);
      const items = rows.filter((r) => sees(p, r.slug)).map(toEnvironment);
      await audit.record(
        auditEvent(ctx, {
          action: 'environments.list',
          outcome: 'allowed',
          resource: 'environments',
          details: { count: items.length },
        }),
      );
      return { items };
    },

    async create(ctx: RequestContext, body: CreateEnvironmentRequest): Promise<Environment> {
      const p = principalOf(ctx);
      return db.withTenant(p.tenantId, async (tx) => {
        const row = await queries.insert(p.tenantId, body, tx);
        if (!row) throw conflict(`environment ${body.slug} already exists`);
        await audit.appendInTx(tx, [
          auditEvent(ctx, {
            action: 'environments.create',
            outcome: 'allowed',
            resource: `environments/${row.slug}`,
            details: { protected: row.protected },
          }),
        ]);
        return toEnvironment(row);
      });
    },

    async update(ctx: RequestContext, slug: string, body: UpdateEnvironmentRequest): Promise<Environment> {
      const p = principalOf(ctx);
      return db.withTenant(p.tenantId, async (tx) => {
        const row = await queries.update(p.tenantId, slug, body, tx);
        if (!row) throw environmentNotFound(slug);
        await audit.appendInTx(tx, [
          auditEvent(ctx, {
            action: 'environments.update',
            outcome: 'allowed',
            resource: `environments/${slug}`,
            details: { fields: Object.keys(body).sort().join(','), protected: row.protected },
          }),
        ]);
        return toEnvironment(row);
      });
    },

    async remove(ctx: RequestContext, slug: string): Promise<void> {
      const p = principalOf(ctx);
      if (slug === DEFAULT_ENVIRONMENT) {
        throw conflict('the default environment cannot be deleted: requests without ?env go there');
      }
      await db.withTenant(p.tenantId, async (tx) => {
        const row = await queries.get(p.tenantId, slug, tx, true);
        if (!row) throw environmentNotFound(slug);
        const count = await queries.secretCount(p.tenantId, slug, tx);
        if (count > 0) {
          throw conflict(
            `environment ${slug} still holds ${count} secret${count === 1 ? '' : 's'} (deleted ones count until purged)`,
          );
        }
        await queries.remove(p.tenantId, slug, tx);
        await audit.appendInTx(tx, [
          auditEvent(ctx, { action: 'environments.delete', outcome: 'allowed', resource: `environments/${slug}` }),
        ]);
      });
    },

    async diff(
      ctx: RequestContext,
      q: { from: string; to: string; kind: SecretKind; owner: string },
    ): Promise<EnvironmentDiff> {
      const p = principalOf(ctx);
      for (const slug of [q.from, q.to]) if (!sees(p, slug)) throw environmentNotFound(slug);
      await existing(p.tenantId, [q.from, q.to]);
      const keySet = await deps.keys.get(p.tenantId);
      const rows = await db.withTenant(p.tenantId, (tx) =>
        currentRows(tx, {
          environments: [q.from, q.to],
          kind: q.kind,
          owner: q.owner,
          names: null,
          keys: keySet.sqlKeys,
          decrypt: false,
          lock: false,
        }),
      );
      // A name the caller may not list on a side is, for it, not there.
      const visible = rows.filter(
        (r) =>
          p.role !== 'service' ||
          allowed(p, 'secrets.list', { environment: r.environment, kind: q.kind, owner: q.owner, name: r.name }),
      );
      const from = new Map(visible.filter((r) => r.environment === q.from).map((r) => [r.name, r]));
      const to = new Map(visible.filter((r) => r.environment === q.to).map((r) => [r.name, r]));
      const names = [...new Set([...from.keys(), ...to.keys()])].sort();
      const items: EnvironmentDiffItem[] = names.map((name) => {
        const a = from.get(name);
        const b = to.get(name);
        const state =
          a && b
            ? fingerprintOf(p.tenantId, keySet, a, q.kind, q.owner) ===
              fingerprintOf(p.tenantId, keySet, b, q.kind, q.owner)
              ? 'same'
              : 'different'
            : a
              ? 'only_in_from'
              : 'only_in_to';
        return {
          name,
          state,
          formatDiffers: a !== undefined && b !== undefined && JSON.stringify(a.format) !== JSON.stringify(b.format),
          rotationDiffers: a !== undefined && b !== undefined && rotationOf(a) !== rotationOf(b),
          fromVersion: a?.current_version ?? null,
          toVersion: b?.current_version ?? null,
        };
      });
      const counts = { same: 0, different: 0, only_in_from: 0, only_in_to: 0 };
      for (const i of items) counts[i.state]++;
      await audit.record(
        auditEvent(ctx, {
          action: 'environments.diff',
          outcome: 'allowed',
          resource: `${q.kind}/${q.owner}`,
          details: { from: q.from, to: q.to, ...counts },
        }),
      );
      return { from: q.from, to: q.to, kind: q.kind, owner: q.owner, items };
    },

    /**
     * Copies the current value of each name from `from` to `to`, all in one transaction: every name's
     * compare-and-set against `expect` holds, or nothing changes and every stale name is named. A name whose value
     * is already the same in `to` keeps its version. A protected `to` takes this from services that may write there.
     */
    async promote(ctx: RequestContext, body: PromoteRequest): Promise<PromoteResponse> {
      const p = principalOf(ctx);
      const { from, to, kind, owner } = body;
      for (const slug of [from, to]) if (!sees(p, slug)) throw environmentNotFound(slug);
      const at = (environment: string, name: string) => ({ environment, kind, owner, name });
      const check = (names: readonly string[]) => {
        const denied: ErrorIssue[] = [];
        for (const n of names) {
          if (!allowed(p, 'secrets.read', at(from, n)))
            denied.push({ path: `names.${n}`, message: `no read in ${from}` });
          if (!allowed(p, 'secrets.write', at(to, n)))
            denied.push({ path: `names.${n}`, message: `no write in ${to}` });
        }
        if (denied.length > 0) throw new AppError('forbidden', 'this identity may not promote every name', denied);
      };
      return writeTransaction(deps, p.tenantId, async (keySet, tx) => {
        for (const slug of [from, to]) {
          if (!(await queries.get(p.tenantId, slug, tx, true))) throw environmentNotFound(slug);
        }
        // Without `names`: every live secret of the owner in `from` that the caller may read there.
        const names = [
          ...(body.names ??
            (await queries.liveNames(p.tenantId, from, kind, owner, tx)).filter(
              (n) => p.role !== 'service' || allowed(p, 'secrets.read', at(from, n)),
            )),
        ].sort();
        check(names);
        const unknown = Object.keys(body.expect ?? {}).filter((n) => !names.includes(n));
        if (unknown.length > 0) {
          throw new AppError(
            'validation_failed',
            'expect names secrets that are not promoted',
            unknown.map((n) => ({ path: `body.expect.${n}`, message: 'not among the promoted names' })),
          );
        }
        // Rows are locked environment by environment in slug order, by name within each: the order of every other
        // multi-row write, so concurrent promotions (in either direction) and bundle writes cannot deadlock.
        const sources = new Map<string, CurrentRow>();
        const targets = new Map<string, Awaited<ReturnType<SecretQueries['lockMany']>>[number]>();
        for (const env of [from, to].sort()) {
          if (env === from) {
            const rows = await currentRows(tx, {
              environments: [from],
              kind,
              owner,
              names,
              keys: keySet.sqlKeys,
              decrypt: true,
              lock: true,
            });
            for (const r of rows) sources.set(r.name, r);
          } else {
            for (const r of await deps.secrets.lockMany(p.tenantId, to, kind, owner, names, tx)) targets.set(r.name, r);
          }
        }
        const missing = names
          .filter((n) => !sources.has(n))
          .map((n) => ({ path: `names.${n}`, message: `no live secret ${n} in ${from}` }));
        if (missing.length > 0) throw new AppError('not_found', `some names have no live secret in ${from}`, missing);
        const stale: ErrorIssue[] = [];
        const plans = new Map<string, { ok: true; create: boolean; version: number }>();
        for (const n of names) {
          const plan = planWrite(targets.get(n), body.expect?.[n]);
          if (plan.ok) plans.set(n, plan);
          else stale.push({ path: `expect.${n}`, message: plan.message });
        }
        if (stale.length > 0) {
          throw new AppError(
            'conflict',
            `nothing was promoted: ${stale.length} name${stale.length === 1 ? ' is' : 's are'} stale in ${to}`,
            stale,
          );
        }
        // What `to` holds now (locked above), to keep the version of a name whose value is already the same.
        const current = new Map(
          (
            await currentRows(tx, {
              environments: [to],
              kind,
              owner,
              names,
              keys: keySet.sqlKeys,
              decrypt: true,
              lock: false,
            })
          ).map((r) => [r.name, fingerprintOfValue(keySet, currentValue(p.tenantId, r, kind, owner))]),
        );
        const values = new Map<string, string>();
        const unprocessables: ErrorIssue[] = [];
        for (const n of names) {
          const value = currentValue(p.tenantId, sources.get(n) as CurrentRow, kind, owner);
          values.set(n, value);
          const target = targets.get(n);
          const src = sources.get(n) as CurrentRow;
          const format = (target ? target.format : src.format) as SecretFormat | null;
          const problem = await deps.writer.formatProblem(format ?? null, value, tx);
          if (problem) {
            unprocessables.push({ path: `names.${n}`, message: `does not satisfy the format in ${to}: ${problem}` });
          }
        }
        if (unprocessables.length > 0) {
          throw new AppError(
            'unprocessable',
            'nothing was promoted: some values fail the target format',
            unprocessables,
          );
        }
        const events: AuditEvent[] = [];
        const changes: ChangeNotice[] = [];
        const items: PromoteResponse['items'] = [];
        for (const n of names) {
          const src = sources.get(n) as CurrentRow;
          const value = values.get(n) as string;
          const target = targets.get(n);
          const plan = plans.get(n) as { ok: true; create: boolean; version: number };
          const fingerprint = TenantKeyCache.fingerprint(keySet, value);
          const same = target !== undefined && current.get(n) === fingerprintOfValue(keySet, value);
          if (same) {
            items.push({
              name: n,
              fromVersion: src.current_version,
              toVersion: target.currentVersion,
              previousToVersion: target.currentVersion,
              changed: false,
            });
            continue;
          }
          const applied = await deps.writer.applyWrite(
            p.identityId,
            p.tenantId,
            at(to, n),
            target,
            target
              ? { value }
              : {
                  value,
                  format: (src.format ?? null) as SecretFormat | null,
                  description: src.description,
                  tags: src.tags,
                },
            plan,
            keySet,
            tx,
          );
          items.push({
            name: n,
            fromVersion: src.current_version,
            toVersion: plan.version,
            previousToVersion: target?.currentVersion ?? null,
            changed: true,
          });
          events.push(
            auditEvent(ctx, {
              action: 'secrets.write',
              outcome: 'allowed',
              resource: pathOf(applied.row),
              environment: to,
              version: plan.version,
              fingerprint,
              details: {
                created: applied.created,
                via: 'promotion',
                from,
                fromVersion: src.current_version,
                previousVersion: target?.currentVersion ?? null,
              },
            }),
          );
          changes.push(
            notices.written(p.tenantId, applied.row, plan.version, applied.created, {
              promotedFrom: from,
              fromVersion: src.current_version,
            }),
          );
        }
        values.clear();
        events.push(
          auditEvent(ctx, {
            action: 'environments.promote',
            outcome: 'allowed',
            resource: `${kind}/${owner}`,
            details: {
              from,
              to,
              promoted: items.filter((i) => i.changed).length,
              unchanged: items.filter((i) => !i.changed).length,
            },
          }),
        );
        await recordChange(deps, tx, p.tenantId, { events, notices: changes });
        return { from, to, items };
      });
    },
  };
}

export type EnvironmentService = ReturnType<typeof environmentService>;
