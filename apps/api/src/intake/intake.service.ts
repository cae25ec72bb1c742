import { createHash, randomBytes } from 'node:crypto';
import {
  CreateIntakeRequest,
  type CreateIntakeResponse,
  DEFAULT_ENVIRONMENT,
  type IntakeLink,
  type IntakeList,
  type IntakeState,
  type IntakeView,
  type SecretFormat,
  type SecretKind,
  type SubmitIntakeResponse,
} from '@coffer/contracts';
import { auditEvent } from '../audit/audit.events.ts';
import type { AuditSink } from '../audit/audit.sink.ts';
import type { AuditEvent } from '../audit/audit.types.ts';
import { authorize } from '../auth/authorize.ts';
import { type Principal, principalOf } from '../auth/principal.ts';
import { newId } from '../crypto/ids.ts';
import type { TenantKeyCache } from '../crypto/tenant-key-cache.ts';
import type { Database, Tx } from '../db/database.ts';
import { requireWritable } from '../environments/environment-gate.ts';
import type { EnvironmentQueries } from '../environments/environments.queries.ts';
import { AppError, conflict, notFound } from '../errors/app-error.ts';
import type { RequestContext } from '../http/request-context.ts';
import { notices, recordChange } from '../secrets/secret-changes.ts';
import { requireAllowed } from '../secrets/secret-reads.service.ts';
import { pathOf, planWrite, type SecretWriter, writeTransaction } from '../secrets/secret-writes.ts';
import type { SecretPath, SecretQueries } from '../secrets/secrets.queries.ts';
import { expandPolicies } from '../trust/claims.ts';
import type { WebhookQueries } from '../webhooks/webhooks.queries.ts';
import type { IntakeQueries, IntakeRow } from './intake.queries.ts';

/**
 * Intake links: a one-time URL through which the person who holds a value writes it into one secret.
 *
 * - The token is 32 random bytes (base64url); only its SHA-256 is stored, so the database never holds a usable link.
 * - A link acts for the identity that made it, as that identity is when the link is used: disabled, deleted or
 *   re-keyed (its client secret rotated), or no longer allowed to write the secret there, and its links stop (410).
 * - The write is compare-and-set on the version the secret had when the link was made. If it moved, nothing is
 *   written and the link is spent (`conflict`): only a new link, made on the secret as it is now, can be right.
 * - A value that fails the format is refused (422, naming the rule) and the link stays usable, so the person can
 *   correct it; a value that is stored spends the link in the same transaction.
 */

export interface IntakeServiceDeps {
  db: Pick<Database, 'withTenant' | 'inTenant'>;
  queries: IntakeQueries;
  secrets: Pick<SecretQueries, 'lock' | 'purge'>;
  keys: Pick<TenantKeyCache, 'get' | 'invalidate'>;
  writer: SecretWriter;
  audit: Pick<AuditSink, 'appendInTx' | 'record'>;
  webhooks: Pick<WebhookQueries, 'enqueueManyInTx'>;
  environments: Pick<EnvironmentQueries, 'get'>;
  /** Where people reach the service: links are `<publicUrl>/v1/intake/<token>`. */
  publicUrl: () => string;
}

/** What a link is made from: the route's body, and what other services (deployments' prompts) pass directly. */
export interface IntakeInput {
  /** `kind/owner/name` */
  path: string;
  /** The secret's environment; `default` when absent. */
  env?: string | undefined;
  /** The rule the value must satisfy; the secret's own format when absent. */
  format?: SecretFormat | undefined;
  expiresInSeconds: number;
  prompt: { label: string; help?: string | undefined };
}

const hashOf = (token: string): Buffer => createHash('sha256').update(token, 'utf8').digest();

const secretPathOf = (l: Pick<IntakeRow, 'environment' | 'kind' | 'owner' | 'name'>): SecretPath => ({
  environment: l.environment,
  kind: l.kind,
  owner: l.owner,
  name: l.name,
});

/** What the public routes answer for a token that names no link: the same for every token, of every tenant. */
const unknownLink = () => notFound('intake link');

const gone = (why: string) => new AppError('gone', `this intake link ${why}: ask for a new one`);

/** The state a caller sees: a pending link past its expiry is expired. */
export function stateOf(l: Pick<IntakeRow, 'state' | 'expiresAt'>, now = Date.now()): IntakeState {
  return l.state === 'pending' && l.expiresAt.getTime() <= now ? 'expired' : l.state;
}

/** 410 unless the link may still be used. */
function requireOpen(l: IntakeRow): void {
  const state = stateOf(l);
  if (state === 'pending') return;
  throw gone(
    {
      expired: 'has expired',
      received: 'was already used',
      conflict: 'was already used',
      revoked: 'was revoked',
    }[state],
  );
}

function toLink(l: IntakeRow): IntakeLink {
  return {
    id: l.id,
    path: pathOf(l),
    environment: l.environment,
    label: l.label,
    help: l.help,
    format: (l.format ?? null) as SecretFormat | null,
    state: stateOf(l),
    expectedVersion: l.expectedVersion,
    receivedVersion: l.receivedVersion,
    createdAt: l.createdAt.toISOString(),
    createdBy: l.createdBy,
    expiresAt: l.expiresAt.toISOString(),
    closedAt: l.closedAt?.toISOString() ?? null,
  };
}

function unprocessable(problem: string): AppError {
  return new AppError('unprocessable', `the value does not satisfy the link's format (${problem})`, [
    { path: 'body.value', message: problem },
  ]);
}

/** The request body's rules, for callers that do not come through the route (which has checked them already). */
function validated(input: IntakeInput) {
  const r = CreateIntakeRequest.safeParse({
    path: input.path,
    env: input.env,
    format: input.format,
    expiresIn: input.expiresInSeconds,
    prompt: input.prompt,
  });
  if (r.success) return r.data;
  throw new AppError(
    'validation_failed',
    'the intake link does not match the schema',
    r.error.issues.map((i) => ({ path: ['body', ...i.path.map(String)].join('.'), message: i.message })),
  );
}

export function intakeService(deps: IntakeServiceDeps) {
  const { db, queries, secrets, writer, audit } = deps;

  /** The link's token, checked against the stored hashes: the link, or the one answer every unknown token gets. */
  async function find(token: string): Promise<IntakeRow> {
    const link = await queries.byTokenHash(hashOf(token));
    if (!link) throw unknownLink();
    return link;
  }

  /**
   * The principal the link acts for, from its creator's current state, or null when the creator may no longer make
   * this write: gone, disabled, re-keyed, or its policies (filled from the claims it had) no longer grant it.
   */
  async function authorityOf(link: IntakeRow, tx: Tx): Promise<Principal | null> {
    const who = await queries.creator(link.tenantId, link.createdBy, tx);
    if (!who || who.disabled || who.credentialVersion !== link.creatorCredentialVersion) return null;
    if (who.role !== 'admin' && who.role !== 'service') return null;
    const claims = link.creatorClaims ?? undefined;
    const p: Principal = {
      identityId: who.id,
      clientId: who.clientId,
      name: who.name,
      tenantId: link.tenantId,
      role: who.role,
      policies: expandPolicies(who.policies, claims),
      claims,
      tokenId: `intake:${link.id}`,
      rateLimitPerSecond: null,
      revision: who.revision,
      credentialVersion: who.credentialVersion,
      cached: false,
      tokenExpiresAt: link.expiresAt,
    };
    const path = secretPathOf(link);
    if (!authorize(p, 'secrets.write', pathOf(path), path.environment).allowed) return null;
    try {
      await requireWritable(deps.environments, p, path.environment, tx);
    } catch (err) {
      if (err instanceof AppError) return null;
      throw err;
    }
    return p;
  }

  /** An event about the link's use, in its tenant's chain, made by whoever holds the link (no identity). */
  const holderEvent = (ctx: RequestContext, link: IntakeRow, e: Omit<Parameters<typeof auditEvent>[1], 'tenantId'>) =>
    auditEvent(
      { ...ctx, principal: null },
      {
        ...e,
        tenantId: link.tenantId,
        resource: pathOf(link),
        environment: link.environment,
        details: { intakeId: link.id, ...(e.details ?? {}) },
      },
    );

  /** A refused look at, or use of, a real link is worth knowing about (a reuse, a malformed value): recorded, thrown. */
  async function refused(
    ctx: RequestContext,
    link: IntakeRow,
    action: 'intake.viewed' | 'intake.received',
    err: unknown,
  ): Promise<never> {
    if (err instanceof AppError && err.code !== 'internal' && err.code !== 'unavailable') {
      await audit.record(holderEvent(ctx, link, { action, outcome: 'error', errorCode: err.code }));
    }
    throw err;
  }

  return {
    /**
     * A new link into one secret. For the route, and for other services that collect a value as part of their own
     * work (a deployment's user-class prompts): pass their transaction as `tx` and the link commits with it.
     */
    async createIntake(ctx: RequestContext, input: IntakeInput, tx?: Tx): Promise<CreateIntakeResponse> {
      const p = principalOf(ctx);
      const body = validated(input);
      const [kind, owner, name] = body.path.split('/') as [SecretKind, string, string];
      const path: SecretPath = { environment: body.env ?? DEFAULT_ENVIRONMENT, kind, owner, name };
      requireAllowed(p, 'intake.create', path);
      const patterns = writer.validate({ formats: [{ format: body.format, where: 'body.format' }] });
      const token = randomBytes(32).toString('base64url');
      const id = newId();
      const expiresAt = new Date(Date.now() + body.expiresIn * 1000);
      await db.inTenant(p.tenantId, tx, async (t) => {
        await requireWritable(deps.environments, p, path.environment, t);
        await writer.compilePatterns(patterns, t);
        const row = await secrets.lock(p.tenantId, path, t);
        if (row?.deletedAt) throw conflict('the secret is deleted: restore it or purge it first');
        const expectedVersion = row?.currentVersion ?? 0;
        await queries.insert(
          p.tenantId,
          {
            id,
            tokenHash: hashOf(token),
            ...path,
            format: body.format ?? row?.format ?? null,
            label: body.prompt.label,
            help: body.prompt.help ?? null,
            expectedVersion,
            createdBy: p.identityId,
            creatorCredentialVersion: p.credentialVersion,
            creatorClaims: p.claims ? { ...p.claims } : null,
            expiresAt,
          },
          t,
        );
        await recordChange({ audit }, t, p.tenantId, {
          events: [
            auditEvent(ctx, {
              action: 'intake.create',
              outcome: 'allowed',
              resource: pathOf(path),
              environment: path.environment,
              version: expectedVersion,
              details: { intakeId: id, expiresAt: expiresAt.toISOString() },
            }),
          ],
        });
      });
      return {
        id,
        url: `${deps.publicUrl()}/v1/intake/${token}`,
        path: pathOf(path),
        environment: path.environment,
        expiresAt: expiresAt.toISOString(),
      };
    },

    async list(ctx: RequestContext, query: { state?: IntakeState | undefined; limit: number }): Promise<IntakeList> {
      const p = principalOf(ctx);
      const rows = await queries.list(p.tenantId, query);
      await audit.record(auditEvent(ctx, { action: 'intake.list', outcome: 'allowed', resource: 'intake' }));
      return { items: rows.map(toLink) };
    },

    async revoke(ctx: RequestContext, id: string): Promise<IntakeLink> {
      const p = principalOf(ctx);
      return db.withTenant(p.tenantId, async (tx) => {
        const link = await queries.lock(p.tenantId, id, tx);
        if (!link) throw notFound('intake link');
        if (link.state !== 'pending') throw conflict(`the link is already closed (${link.state})`);
        const revoked = await queries.close(p.tenantId, id, 'revoked', null, tx);
        await recordChange({ audit }, tx, p.tenantId, {
          events: [
            auditEvent(ctx, {
              action: 'intake.revoke',
              outcome: 'allowed',
              resource: pathOf(link),
              environment: link.environment,
              details: { intakeId: id },
            }),
          ],
        });
        return toLink(revoked);
      });
    },

    /** The public view: the prompt and the rule, and the name the value goes into; nothing else of the tenant. */
    async view(ctx: RequestContext, token: string): Promise<IntakeView> {
      const link = await find(token);
      try {
        requireOpen(link);
        const ok = await db.withTenant(link.tenantId, async (tx) => (await authorityOf(link, tx)) !== null);
        if (!ok) throw gone('is no longer valid');
      } catch (err) {
        return refused(ctx, link, 'intake.viewed', err);
      }
      await audit.record(holderEvent(ctx, link, { action: 'intake.viewed', outcome: 'allowed' }));
      return {
        name: link.name,
        label: link.label,
        help: link.help,
        format: (link.format ?? null) as SecretFormat | null,
        expiresAt: link.expiresAt.toISOString(),
      };
    },

    /** The value, written once, compare-and-set, as the link's creator; the link is spent in the same transaction. */
    async submit(ctx: RequestContext, token: string, value: string): Promise<SubmitIntakeResponse> {
      const found = await find(token);
      let outcome: { ok: true; receivedAt: Date } | { ok: false; reason: string };
      try {
        requireOpen(found);
        writer.validate({ values: [{ value, where: 'body.value' }] });
        outcome = await writeTransaction(deps, found.tenantId, async (keySet, tx) => {
          // Under the lock: a concurrent use, refusal or revocation has either happened or waits for this one.
          const link = await queries.lock(found.tenantId, found.id, tx);
          if (!link) throw unknownLink();
          requireOpen(link);
          const creator = await authorityOf(link, tx);
          if (!creator) throw gone('is no longer valid');
          const as: RequestContext = { ...ctx, principal: creator };
          const path = secretPathOf(link);
          const events: AuditEvent[] = [];
          const row = await writer.purgeIfWindowClosed(
            as,
            link.tenantId,
            await secrets.lock(link.tenantId, path, tx),
            tx,
            events,
          );
          const plan = planWrite(row, link.expectedVersion);
          if (!plan.ok) {
            // Spent: the link was made for the secret as it was then, and that cannot come back.
            await queries.close(link.tenantId, link.id, 'conflict', null, tx);
            events.push(
              holderEvent(ctx, link, {
                action: 'intake.received',
                outcome: 'error',
                errorCode: 'conflict',
                details: { reason: plan.message },
              }),
            );
            await recordChange(deps, tx, link.tenantId, { events });
            return { ok: false as const, reason: plan.message };
          }
          // The link's rule, and the secret's own if it has another (a PATCH may have set one since).
          const formats = new Map(
            [link.format, row?.format].filter((f) => f !== null && f !== undefined).map((f) => [JSON.stringify(f), f]),
          );
          for (const f of formats.values()) {
            const problem = await writer.formatProblem(f as SecretFormat, value, tx);
            if (problem) throw unprocessable(problem);
          }
          const input = { value, ...(plan.create && link.format ? { format: link.format as SecretFormat } : {}) };
          const applied = await writer.applyWrite(
            creator.identityId,
            link.tenantId,
            path,
            row,
            input,
            plan,
            keySet,
            tx,
          );
          const write = writer.writeEvent(as, applied.row, plan.version, keySet, value, applied.created, 'intake');
          events.push(
            { ...write, details: { ...write.details, intakeId: link.id } },
            auditEvent(as, {
              action: 'intake.received',
              outcome: 'allowed',
              resource: pathOf(path),
              environment: path.environment,
              version: plan.version,
              details: { intakeId: link.id },
            }),
          );
          await queries.close(link.tenantId, link.id, 'received', plan.version, tx);
          await recordChange(deps, tx, link.tenantId, {
            events,
            notices: [notices.written(link.tenantId, path, plan.version, applied.created)],
          });
          return { ok: true as const, receivedAt: new Date() };
        });
      } catch (err) {
        return refused(ctx, found, 'intake.received', err);
      }
      if (!outcome.ok) {
        throw conflict('the secret changed since this link was made, so the value was not stored: ask for a new link');
      }
      return { name: found.name, receivedAt: outcome.receivedAt.toISOString() };
    },
  };
}

export type IntakeService = ReturnType<typeof intakeService>;
