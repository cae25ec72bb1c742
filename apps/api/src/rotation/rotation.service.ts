import {
  DEFAULT_ENVIRONMENT,
  PLATFORM_TENANT_ID,
  type RotateSecretRequest,
  type RotationDue,
  type RotationLog,
  type SecretMetadata,
} from '@coffer/contracts';
import type { Logger } from 'pino';
import { auditEvent, systemEvent } from '../audit/audit.events.ts';
import type { AuditQueries } from '../audit/audit.queries.ts';
import type { AuditSink } from '../audit/audit.sink.ts';
import type { AuditEvent } from '../audit/audit.types.ts';
import { principalOf } from '../auth/principal.ts';
import { TenantKeyCache, type TenantKeySet } from '../crypto/tenant-key-cache.ts';
import type { Database, Tx } from '../db/database.ts';
import { pgErrorCode } from '../db/pg-errors.ts';
import { requireWritable } from '../environments/environment-gate.ts';
import type { EnvironmentQueries } from '../environments/environments.queries.ts';
import { AppError, notFound } from '../errors/app-error.ts';
import type { CursorCodec } from '../http/cursor.ts';
import type { RequestContext } from '../http/request-context.ts';
import { notices, recordChange } from '../secrets/secret-changes.ts';
import { requireAllowed } from '../secrets/secret-reads.service.ts';
import {
  DEFAULT_GRACE_HOURS,
  pathOf,
  type SecretWriter,
  toMetadata,
  writeTransaction,
} from '../secrets/secret-writes.ts';
import type { SecretPath, SecretQueries, SecretRow } from '../secrets/secrets.queries.ts';
import type { WebhookQueries } from '../webhooks/webhooks.queries.ts';
import { generateValue } from './generator.ts';
import type { RotationQueries } from './rotation.queries.ts';

export interface RotationServiceDeps {
  db: Pick<Database, 'withTenant' | 'rescope'>;
  secrets: SecretQueries;
  queries: RotationQueries;
  auditReads: Pick<AuditQueries, 'page'>;
  keys: Pick<TenantKeyCache, 'get' | 'invalidate'>;
  writer: SecretWriter;
  audit: AuditSink;
  webhooks: Pick<WebhookQueries, 'enqueueManyInTx'>;
  log: Logger;
  cursors: CursorCodec;
  environments: Pick<EnvironmentQueries, 'get'>;
}

const DURATION_MS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const parseDuration = (d: string) => Number(d.slice(0, -1)) * (DURATION_MS[d.slice(-1)] ?? 0);

type Trigger = 'manual' | 'scheduler';

/**
 * Rotation: a new current version from a given value or the secret's generator, the previous one served for the
 * grace period, the next due date moved on, one audit event and a webhook, all in one transaction. The scheduler
 * rotates due secrets with a generator, each exactly once across replicas.
 */
export function rotationService(deps: RotationServiceDeps) {
  const { db, secrets, queries, writer, audit } = deps;

  /** A rotation's events: the caller's, or the scheduler's own. */
  const eventOf = (origin: RequestContext | 'scheduler', e: Parameters<typeof systemEvent>[1]): AuditEvent =>
    origin === 'scheduler' ? systemEvent('scheduler', e) : auditEvent(origin, e);

  /** A new value, generated or given, checked before it is written (write-validation.ts). */
  const checkedValue = (value: string): string => {
    writer.validate({ values: [{ value, where: 'body.value' }] });
    return value;
  };

  /**
   * The rotation itself, on a row locked in `tx`, with a value already through `checkedValue`. Throws AppError (422)
   * when the value fails the format.
   */
  async function rotateLocked(
    origin: RequestContext | 'scheduler',
    tenantId: string,
    row: SecretRow,
    value: string,
    trigger: Trigger,
    keySet: TenantKeySet,
    tx: Tx,
    /** For the rotation log: why (never a value), and the deployment whose revocation rotated it. */
    note: { notes?: string | undefined; deployment?: string | undefined } = {},
  ): Promise<SecretRow> {
    const problem = await writer.formatProblem((row.format ?? null) as never, value, tx);
    if (problem) {
      throw new AppError('unprocessable', `the new value does not satisfy the secret's format (${problem})`, [
        { path: 'body.value', message: problem },
      ]);
    }
    const now = new Date();
    const from = row.currentVersion;
    const to = from + 1;
    const applied = await writer.applyWrite(
      origin === 'scheduler' ? null : (origin.principal?.identityId ?? null),
      tenantId,
      row,
      row,
      { value },
      { create: false, version: to },
      keySet,
      tx,
      {
        lastRotatedAt: now,
        nextRotationAt: row.rotationIntervalDays
          ? new Date(now.getTime() + row.rotationIntervalDays * 86_400_000)
          : null,
      },
    );
    const grace = (row.rotationGraceHours ?? DEFAULT_GRACE_HOURS) * 3_600_000;
    await secrets.serveUntil(tenantId, row.id, from, new Date(now.getTime() + grace), tx);
    await recordChange(deps, tx, tenantId, {
      events: [
        eventOf(origin, {
          tenantId,
          action: 'secrets.rotate',
          outcome: 'allowed',
          resource: pathOf(row),
          environment: row.environment,
          version: to,
          fingerprint: TenantKeyCache.fingerprint(keySet, value),
          details: {
            from,
            to,
            trigger,
            ...(row.ownerTeam ? { ownerTeam: row.ownerTeam } : {}),
            ...(note.notes ? { notes: note.notes } : {}),
            ...(note.deployment ? { deployment: note.deployment } : {}),
          },
        }),
      ],
      notices: [notices.rotated(tenantId, row, from, to, trigger, now)],
    });
    return applied.row;
  }

  /** One due secret: claimed, rotated (or its failure recorded and postponed), committed. False when none is due. */
  async function rotateOneDue(): Promise<'rotated' | 'failed' | 'skipped' | 'none'> {
    // Set inside the transaction, read after it: a holder, since TypeScript does not track writes in callbacks.
    const claimed: {
      current: { tenantId: string; secretId: string; path?: string; environment?: string; version?: number } | null;
    } = {
      current: null,
    };
    try {
      return await db.withTenant(PLATFORM_TENANT_ID, async (tx) => {
        const claim = await queries.claimDue(tx);
        if (!claim) return 'none';
        claimed.current = { tenantId: claim.tenantId, secretId: claim.secretId };
        await db.rescope(tx, claim.tenantId);
        const row = await queries.lockSecretById(claim.tenantId, claim.secretId, tx);
        if (row) {
          claimed.current = {
            ...claimed.current,
            path: pathOf(row),
            environment: row.environment,
            version: row.currentVersion,
          };
        }
        if (!row || row.deletedAt || !row.generator) {
          await secrets.schedule(claim.tenantId, claim.secretId, null, false, tx);
          return 'skipped';
        }
        const keySet = await deps.keys.get(claim.tenantId);
        try {
          await rotateLocked(
            'scheduler',
            claim.tenantId,
            row,
            checkedValue(generateValue(row.generator as never)),
            'scheduler',
            keySet,
            tx,
          );
          return 'rotated';
        } catch (err) {
          if (!(err instanceof AppError)) throw err;
          // The generator cannot satisfy the format: record it, tell the webhooks, try again in an hour.
          await queries.postpone(claim.tenantId, row.id, new Date(Date.now() + 3_600_000), tx);
          await recordChange(deps, tx, claim.tenantId, {
            events: [
              systemEvent('scheduler', {
                tenantId: claim.tenantId,
                action: 'secrets.rotate',
                outcome: 'error',
                errorCode: err.code,
                resource: pathOf(row),
                environment: row.environment,
                version: row.currentVersion,
                details: { from: row.currentVersion, trigger: 'scheduler', reason: err.message.slice(0, 200) },
              }),
            ],
            notices: [notices.rotationFailed(claim.tenantId, row, err.code)],
          });
          return 'failed';
        }
      });
    } catch (err) {
      const c = claimed.current;
      if (!c) throw err;
      if (pgErrorCode(err) === 'CF001') {
        deps.keys.invalidate(c.tenantId);
        return 'skipped';
      }
      // Anything else (a key missing from the keyring, a database error on this secret): the rotation rolled back.
      // Record it and postpone this secret in a transaction of its own, so one failing secret cannot hold back every
      // other; if even that fails (the database is gone), the pass ends.
      deps.log.error({ err, tenantId: c.tenantId, secretId: c.secretId }, 'scheduled rotation failed');
      await db.withTenant(c.tenantId, async (tx) => {
        await queries.postpone(c.tenantId, c.secretId, new Date(Date.now() + 3_600_000), tx);
        await recordChange(deps, tx, c.tenantId, {
          events: [
            systemEvent('scheduler', {
              tenantId: c.tenantId,
              action: 'secrets.rotate',
              outcome: 'error',
              errorCode: 'internal',
              resource: c.path ?? null,
              ...(c.environment !== undefined ? { environment: c.environment } : {}),
              version: c.version ?? null,
              details: { from: c.version ?? null, trigger: 'scheduler', reason: 'internal error' },
            }),
          ],
        });
      });
      return 'failed';
    }
  }

  return {
    rotateLocked,

    async rotate(ctx: RequestContext, path: SecretPath, body: RotateSecretRequest): Promise<SecretMetadata> {
      const p = principalOf(ctx);
      requireAllowed(p, 'secrets.rotate', path);
      const given = body.value === undefined ? undefined : checkedValue(body.value);
      const row = await writeTransaction(deps, p.tenantId, async (keySet, tx) => {
        await requireWritable(deps.environments, p, path.environment, tx);
        const current = await secrets.lock(p.tenantId, path, tx);
        if (!current || current.deletedAt) throw notFound('secret');
        let value = given;
        if (value === undefined) {
          if (!current.generator) {
            throw new AppError('unprocessable', 'the secret has no generator: give the new value', [
              { path: 'body.value', message: 'required when the secret has no rotation generator' },
            ]);
          }
          value = checkedValue(generateValue(current.generator as never));
        }
        return rotateLocked(ctx, p.tenantId, current, value, 'manual', keySet, tx, { notes: body.notes });
      });
      return toMetadata(row);
    },

    async due(
      ctx: RequestContext,
      q: { env?: string | undefined; within: string; limit: number },
    ): Promise<RotationDue> {
      const p = principalOf(ctx);
      const now = Date.now();
      const environment = q.env ?? DEFAULT_ENVIRONMENT;
      const rows = await queries.due(p.tenantId, environment, new Date(now + parseDuration(q.within)), q.limit);
      await audit.record(
        auditEvent(ctx, {
          action: 'rotation.due',
          outcome: 'allowed',
          resource: 'rotation',
          environment,
          details: { count: rows.length },
        }),
      );
      return {
        // Only admins and auditors may ask (authorize.ts), and both see every secret's metadata.
        items: rows.map((r) => ({
          kind: r.kind,
          owner: r.owner,
          name: r.name,
          path: pathOf(r),
          intervalDays: r.rotationIntervalDays ?? 0,
          lastRotatedAt: r.lastRotatedAt?.toISOString() ?? null,
          nextRotationAt: (r.nextRotationAt as Date).toISOString(),
          overdue: (r.nextRotationAt as Date).getTime() <= now,
          automatic: r.generator !== null,
        })),
      };
    },

    /** The rotation log teams keep by hand, read from the audit chain. */
    async log(
      ctx: RequestContext,
      q: {
        env?: string | undefined;
        from?: string | undefined;
        to?: string | undefined;
        limit: number;
        cursor?: string | undefined;
      },
    ): Promise<RotationLog> {
      const p = principalOf(ctx);
      const environment = q.env ?? DEFAULT_ENVIRONMENT;
      const scope = {
        route: 'rotation.log',
        tenantId: p.tenantId,
        identityId: p.identityId,
        filters: { from: q.from, to: q.to, ...(environment !== DEFAULT_ENVIRONMENT ? { env: environment } : {}) },
      };
      const before = deps.cursors.openSeq(scope, q.cursor);
      const rows = await deps.auditReads.page(
        p.tenantId,
        { actions: ['secrets.rotate', 'secrets.revoke'], from: q.from, to: q.to, environment },
        before,
        q.limit + 1,
      );
      const items = rows.slice(0, q.limit);
      const last = items.at(-1);
      await audit.record(
        auditEvent(ctx, { action: 'rotation.log', outcome: 'allowed', resource: 'rotation', environment }),
      );
      return {
        items: items.map((r) => {
          const text = (k: string) => (typeof r.details?.[k] === 'string' ? (r.details[k] as string) : null);
          const revoke = r.action === 'secrets.revoke';
          return {
            at: r.occurredAt.toISOString(),
            path: r.resource ?? '',
            fromVersion: revoke ? r.version : typeof r.details?.from === 'number' ? r.details.from : null,
            toVersion: !revoke && typeof r.details?.to === 'number' ? r.details.to : null,
            trigger: r.details?.trigger === 'scheduler' ? ('scheduler' as const) : ('manual' as const),
            actorId: r.actorId,
            actorName: r.actorName,
            outcome: r.outcome,
            errorCode: r.errorCode,
            event: revoke ? ('revoke' as const) : ('rotate' as const),
            environment: text('environment') ?? DEFAULT_ENVIRONMENT,
            ownerTeam: text('ownerTeam'),
            notes: text('notes'),
            deployment: text('deployment'),
          };
        }),
        nextCursor: rows.length > q.limit && last ? deps.cursors.seal(scope, { s: last.seq }) : null,
      };
    },

    /** One scheduler pass: rotates due secrets one transaction each, up to `max`. */
    async runDue(max = 200): Promise<{ rotated: number; failed: number }> {
      let rotated = 0;
      let failed = 0;
      for (let i = 0; i < max; i++) {
        const r = await rotateOneDue();
        if (r === 'none') break;
        if (r === 'rotated') rotated++;
        if (r === 'failed') failed++;
      }
      if (rotated + failed > 0) deps.log.info({ rotated, failed }, 'scheduled rotations');
      return { rotated, failed };
    },
  };
}

export type RotationService = ReturnType<typeof rotationService>;
