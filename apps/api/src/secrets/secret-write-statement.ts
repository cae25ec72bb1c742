import type { ErrorIssue, SecretFormat, SecretKind } from '@coffer/contracts';
import { toAppendRow } from '../audit/audit.digest.ts';
import { auditEvent } from '../audit/audit.events.ts';
import type { AuditEvent } from '../audit/audit.types.ts';
import type { Principal } from '../auth/principal.ts';
import { principalOf } from '../auth/principal.ts';
import { TenantKeyCache, type TenantKeySet } from '../crypto/tenant-key-cache.ts';
import { environmentNotFound, protectedRefusal } from '../environments/environment-gate.ts';
import { type AppError, conflict, unauthorized } from '../errors/app-error.ts';
import type { RequestContext } from '../http/request-context.ts';
import { checkFormat } from './formats.ts';
import { type ChangeNotice, notices } from './secret-changes.ts';
import { nextRow, type Plan, pathOf, planWrite, type SecretWriter, type WriteInput } from './secret-writes.ts';
import type { CheckItem, SecretQueries, SecretRow, WriteItem } from './secrets.queries.ts';
import type { CallResult, ChainRef, SecretWriteBatcher } from './write-batcher.ts';
import { WriteLanes } from './write-lanes.ts';
import { invalidPattern, type NewPattern } from './write-validation.ts';

/** One name a request changes: a new value (with where the request carried it), or a soft delete. */
export type NameChange =
  | { name: string; set: WriteInput; where: string; at: string; via?: string }
  | { name: string; remove: true; where: string; at: string; via?: string };

/** The refusals a request can meet, in the words of its route (a PUT names one field, a bundle each name). */
export interface Refusals {
  conflict(issues: ErrorIssue[]): AppError;
  unprocessable(issues: ErrorIssue[]): AppError;
}

export interface StatementWriteDeps {
  secrets: Pick<SecretQueries, 'writeItem'>;
  keys: Pick<TenantKeyCache, 'get' | 'invalidate'>;
  writer: Pick<SecretWriter, 'windowClosed' | 'purgeEvent' | 'writeEvent'>;
  batcher: Pick<SecretWriteBatcher, 'submit'>;
  lanes: WriteLanes;
  /** Rebuilds a principal whose identity changed (the statement found a newer revision); 401 if it may not act. */
  refreshPrincipal: (p: Principal) => Promise<Principal>;
  /** Events a write committed (counted, as appendInTx counts them). */
  committed: (events: readonly AuditEvent[]) => void;
  /** How long a write may wait, in all, for rows another transaction holds before it answers 503. */
  lockTimeoutMs: number;
}

/**
 * How long one statement waits for a row another transaction holds before it gives that call back to be sent again:
 * short, so one locked row does not hold up the other writes of the tenant that share the statement.
 */
export const ROW_LOCK_WAIT_MS = 100;

/** What a write did to each name it set or deleted. */
export interface Written {
  row: SecretRow;
  created: boolean;
  version: number;
}

/**
 * Plans on the same row again after it moved under the write this many times before answering 409. Writers of one
 * secret in this process never collide (WriteLanes); only another replica, or a change by another path, moves a row.
 */
const MAX_REPLANS = 5;
const MAX_CHAINED_REPLANS = 100;

interface Planned {
  items: (WriteItem | CheckItem)[];
  values: string[];
  events: AuditEvent[];
  notices: ChangeNotice[];
  conflicts: ErrorIssue[];
  unprocessables: ErrorIssue[];
  /** Each set's plan and new row, by name. */
  plans: Map<string, { plan: Extract<Plan, { ok: true }>; next: SecretRow } | { deleted: SecretRow }>;
  /** Where each item's value was carried, by item index (for pattern failures). */
  where: string[];
  /** Each item's row as the write leaves it (its MAC included), when it applies. */
  rows: (SecretRow | null)[];
  /** Items planned on a row an earlier write will leave. */
  chains: { item: number; after: ChainRef }[];
}

/**
 * Secret writes in one statement (coffer.write_secrets), for PUT and bundle writes. A write is planned in
 * TypeScript on the rows as last seen (compare-and-set, formats, the new rows and their MACs, the audit events and
 * webhook notices), then sent as one call that the database applies only if those rows are still current; the
 * calls of a tenant's concurrent writers share a statement (SecretWriteBatcher). When a row moved, the statement answers
 * with the row as it is, and the write is planned again on it. A write the API refuses on what it saw is sent too,
 * not applied: so the identity, the environment and the rows are confirmed in the database before any answer, in
 * the order a request has always met them.
 */
export function statementWrites(deps: StatementWriteDeps) {
  const { lanes } = deps;

  function plan(
    ctx: RequestContext,
    p: Principal,
    where: { environment: string; kind: SecretKind; owner: string },
    changes: readonly NameChange[],
    keySet: TenantKeySet,
  ): Planned {
    const out: Planned = {
      items: [],
      values: [],
      events: [],
      notices: [],
      conflicts: [],
      unprocessables: [],
      plans: new Map(),
      where: [],
      rows: [],
      chains: [],
    };
    const purges: AuditEvent[] = [];
    const writes: AuditEvent[] = [];
    const deletes: AuditEvent[] = [];
    const byName: {
      name: string;
      item: WriteItem | CheckItem;
      where: string;
      row: SecretRow | null;
      after: ChainRef | undefined;
    }[] = [];
    for (const change of changes) {
      const path = { ...where, name: change.name };
      const known = lanes.known(WriteLanes.key(p.tenantId, path));
      const xmin = known?.xmin ?? null;
      const after = known?.pending;
      let row: SecretRow | undefined = known?.row;
      let purgeId: string | null = null;
      if (row && deps.writer.windowClosed(row)) {
        purges.push(deps.writer.purgeEvent(ctx, p.tenantId, row));
        purgeId = row.id;
        row = undefined;
      }
      const check: CheckItem = { name: change.name, xmin, pattern: null, version: null };
      if ('remove' in change) {
        if (!row || row.deletedAt) {
          out.conflicts.push({ path: change.at, message: 'the secret does not exist' });
          byName.push({ name: change.name, item: check, where: change.where, row: null, after });
          continue;
        }
        const now = new Date();
        const deleted: SecretRow = { ...row, deletedAt: now, deletedBy: p.identityId, updatedAt: now };
        out.plans.set(change.name, { deleted });
        out.notices.push(notices.deleted(p.tenantId, row, row.currentVersion, false));
        deletes.push(
          auditEvent(ctx, {
            action: 'secrets.delete',
            outcome: 'allowed',
            resource: pathOf(row),
            environment: row.environment,
            version: row.currentVersion,
            ...(change.via ? { details: { via: change.via } } : {}),
          }),
        );
        const item = deps.secrets.writeItem(deleted, {
          op: 'delete',
          xmin,
          create: false,
          purgeId: null,
          pattern: null,
          schedule: false,
        });
        byName.push({ name: change.name, where: change.where, item, row: sealedAs(deleted, item), after });
        continue;
      }
      const planned = planWrite(row, change.set.ifVersion);
      if (!planned.ok) {
        out.conflicts.push({ path: change.at, message: planned.message });
        byName.push({ name: change.name, item: check, where: change.where, row: null, after });
        continue;
      }
      const value = change.set.value;
      const format =
        change.set.format !== undefined ? change.set.format : ((row?.format ?? null) as SecretFormat | null);
      const verdict = checkFormat(format, value);
      if (!verdict.ok) out.unprocessables.push({ path: change.where, message: verdict.rule ?? 'format' });
      out.values.push(value);
      const next = nextRow(row, {
        tenantId: p.tenantId,
        path,
        input: change.set,
        version: planned.version,
        actorId: p.identityId,
      });
      out.plans.set(change.name, { plan: planned, next });
      out.notices.push(notices.written(p.tenantId, path, planned.version, planned.create));
      writes.push(deps.writer.writeEvent(ctx, next, planned.version, keySet, value, planned.create, change.via));
      const item = deps.secrets.writeItem(next, {
        op: 'write',
        xmin,
        create: planned.create,
        purgeId,
        version: {
          value: out.values.length,
          dekVersion: keySet.activeVersion,
          createdBy: p.identityId,
          fingerprint: TenantKeyCache.fingerprint(keySet, value),
        },
        pattern: verdict.ok ? (verdict.pattern ?? null) : null,
        schedule: change.set.rotation !== undefined,
      });
      byName.push({ name: change.name, where: change.where, item, row: sealedAs(next, item), after });
    }
    // Rows are locked in name order, so two writes that share names cannot wait on each other in a cycle.
    byName.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    out.items = byName.map((b) => b.item);
    out.where = byName.map((b) => b.where);
    out.rows = byName.map((b) => b.row);
    byName.forEach((b, item) => {
      if (b.after) out.chains.push({ item, after: b.after });
    });
    out.events = [...purges, ...writes, ...deletes];
    return out;
  }

  return {
    /**
     * Applies `changes` (names of one owner in one environment) all or nothing, and returns what each became.
     * `authorize` runs again on a principal rebuilt after its identity changed.
     */
    async write(
      ctx: RequestContext,
      where: { environment: string; kind: SecretKind; owner: string },
      changes: readonly NameChange[],
      newPatterns: readonly NewPattern[],
      refuse: Refusals,
      authorize: (p: Principal) => void,
    ): Promise<Map<string, Written>> {
      const first = principalOf(ctx);
      const keyOf = (name: string) => WriteLanes.key(first.tenantId, { ...where, name });
      const laneKeys = changes.map((c) => keyOf(c.name));
      let p = first;
      let keySet = await deps.keys.get(p.tenantId);
      const retried = { identity: false, keys: false, stale: 0, chained: 0 };
      const started = Date.now();
      for (;;) {
        // The lanes are held while the write is planned and queued: the next write of these secrets is planned on
        // what this one will leave, and may share its statement.
        const sent = await lanes.run(laneKeys, async () => {
          const planned = plan(ctx, p, where, changes, keySet);
          const refusing = planned.conflicts.length > 0 || planned.unprocessables.length > 0;
          const { handle, result } = deps.batcher.submit(p.tenantId, {
            call: {
              identity: p.identityId,
              revision: p.revision,
              env: where.environment,
              kind: where.kind,
              owner: where.owner,
              apply: !refusing,
              patterns: newPatterns.map((x) => x.pattern),
              items: planned.items,
              events: refusing ? [] : planned.events.map(toAppendRow),
              notices: refusing ? [] : planned.notices,
            },
            values: planned.values,
            dekVersion: keySet.activeVersion,
            dekHex: keySet.activeKey,
            chains: planned.chains,
            alone: planned.items.some((item) => item.pattern !== null) || newPatterns.length > 0,
          });
          // Awaited below, once the lanes are free; never left unhandled meanwhile.
          const settled = result.then(
            () => undefined,
            () => undefined,
          );
          if (!refusing && planned.items.every((item) => item.pattern === null)) {
            planned.items.forEach((item, i) => {
              const row = planned.rows[i];
              if (row?.mac) lanes.predict(keyOf(item.name), row, { handle, item: i, mac: row.mac });
            });
          } else if (!refusing) {
            // A value checked against a custom pattern may yet fail in the database, and so would every write
            // planned on top of it: the next write waits for this one instead.
            await settled;
          }
          return { planned, handle, result };
        });
        const { planned, handle } = sent;
        // A statement that failed as a whole leaves nothing known: what was planned on top of it replans.
        const result: CallResult = await sent.result;
        if ('items' in result) {
          // Whatever the statement answered, each row it names is what the next write of it is planned on.
          planned.items.forEach((item, i) => {
            const r = result.items[i];
            if (r) lanes.settle(keyOf(item.name), handle, r.row, r.xmin);
          });
        }
        switch (result.outcome) {
          case 'identity_changed':
            if (retried.identity) throw unauthorized('the token is no longer valid: log in again');
            retried.identity = true;
            p = await deps.refreshPrincipal(p);
            ctx.principal = p;
            authorize(p);
            continue;
          case 'environment_not_found':
            throw environmentNotFound(where.environment);
          case 'environment_protected':
            throw protectedRefusal(where.environment);
          case 'bad_pattern':
            throw invalidPattern(newPatterns[result.index]?.where ?? 'body.format.pattern');
          case 'key_retired':
            // Another replica rotated the data key: reload the keys once.
            if (retried.keys)
              throw Object.assign(new Error('the active data key was retired twice'), { code: 'CF001' });
            retried.keys = true;
            deps.keys.invalidate(p.tenantId);
            keySet = await deps.keys.get(p.tenantId);
            continue;
          case 'failed':
            if (result.code === '55P03' && Date.now() - started < deps.lockTimeoutMs) {
              // A row stayed locked by another transaction: send it again, after a pause, until the lock timeout.
              await new Promise((r) => setTimeout(r, 5 + Math.random() * 20));
              continue;
            }
            throw Object.assign(new Error('coffer.write_secrets failed'), { code: result.code });
          case 'stale':
            // Planned on the row an earlier write of this replica was to leave, which did not apply: not a
            // concurrent change, so it does not count as one (up to a bound that only a fault would reach).
            if (planned.chains.length > 0 ? ++retried.chained > MAX_CHAINED_REPLANS : ++retried.stale > MAX_REPLANS)
              throw conflict('the secret changed concurrently; retry');
            continue;
        }
        const patternFailures = result.items.flatMap((r, i) =>
          r.patternOk === false
            ? [{ path: planned.where[i] as string, message: 'pattern: must match the format pattern' }]
            : [],
        );
        if (result.outcome === 'checked') {
          if (planned.conflicts.length > 0) throw refuse.conflict(planned.conflicts);
          throw refuse.unprocessable(inRequestOrder([...planned.unprocessables, ...patternFailures], changes));
        }
        if (result.outcome === 'format') throw refuse.unprocessable(inRequestOrder(patternFailures, changes));
        deps.committed(planned.events);
        const written = new Map<string, Written>();
        planned.items.forEach((item, i) => {
          const row = result.items[i]?.row;
          const made = planned.plans.get(item.name);
          if (!row || !made) throw new Error(`coffer.write_secrets wrote no row for ${item.name}`);
          written.set(
            item.name,
            'deleted' in made
              ? { row, created: false, version: row.currentVersion }
              : { row, created: made.plan.create, version: made.plan.version },
          );
        });
        return written;
      }
    },
  };
}

/** The row as stored: with the MAC its item carries. */
function sealedAs(row: SecretRow, item: WriteItem): SecretRow {
  return { ...row, mac: item.row.mac as string };
}

/** Issues in the order the request named them (the body's order), as the refusals have always listed them. */
function inRequestOrder(issues: ErrorIssue[], changes: readonly NameChange[]): ErrorIssue[] {
  const rank = new Map(changes.map((c, i) => [c.where, i]));
  return [...issues].sort((a, b) => (rank.get(a.path) ?? 0) - (rank.get(b.path) ?? 0));
}

export type StatementWrites = ReturnType<typeof statementWrites>;
