import type { CreatePostgresBackendRequest, PostgresBackend, PostgresBackendList } from '@coffer/contracts';
import { auditEvent } from '../audit/audit.events.ts';
import { principalOf } from '../auth/principal.ts';
import { newId } from '../crypto/ids.ts';
import { pgErrorCode } from '../db/pg-errors.ts';
import { AppError, conflict, notFound } from '../errors/app-error.ts';
import type { RequestContext } from '../http/request-context.ts';
import type { BackendRow } from './dynamic.queries.ts';
import { connectionUrl, type DynamicDeps } from './revocation.ts';
import { describeTargetError, TargetMisconfigured, TargetUnavailable } from './target.ts';
import {
  DEFAULT_USERNAME_TEMPLATE,
  type ParsedStatement,
  parseStatements,
  parseUsernameTemplate,
  type StatementKind,
  TemplateProblem,
} from './templates.ts';

/** What renewal runs unless the backend says otherwise: the role stops accepting its password at the new end. */
export const DEFAULT_RENEW_STATEMENTS = ['ALTER ROLE {{name}} VALID UNTIL {{expiration}}'];

export function toBackend(r: BackendRow & { activeLeases: number }): PostgresBackend {
  return {
    name: r.name,
    engine: r.engine,
    connectionSecret: r.connectionSecret,
    creationStatements: r.creationStatements,
    revocationStatements: r.revocationStatements,
    renewStatements: r.renewStatements,
    defaultTtlSeconds: r.defaultTtlSeconds,
    maxTtlSeconds: r.maxTtlSeconds,
    usernameTemplate: r.usernameTemplate,
    activeLeases: r.activeLeases,
    createdAt: r.createdAt.toISOString(),
    updatedAt: r.updatedAt.toISOString(),
  };
}

const invalid = (path: string, message: string) =>
  new AppError('validation_failed', `${path.replace(/^body\./, '')}: ${message}`, [{ path, message }]);

function checked(texts: readonly string[], kind: StatementKind, field: string): ParsedStatement[] {
  const r = parseStatements(texts, kind, field);
  if (!r.ok) throw invalid(r.path, r.message);
  return r.statements;
}

/** The backends a tenant admin configures; everything about them is checked before one is stored. */
export function backendService(deps: DynamicDeps) {
  const { db, queries, audit, targets } = deps;

  return {
    async create(ctx: RequestContext, body: CreatePostgresBackendRequest): Promise<PostgresBackend> {
      const p = principalOf(ctx);
      const creation = checked(body.creationStatements, 'creation', 'creationStatements');
      checked(body.revocationStatements, 'revocation', 'revocationStatements');
      const renewStatements = body.renewStatements ?? DEFAULT_RENEW_STATEMENTS;
      checked(renewStatements, 'renew', 'renewStatements');
      if (!creation.some((s) => s.uses.has('name'))) {
        throw invalid('body.creationStatements', 'must make the role {{name}}, e.g. CREATE ROLE {{name}} LOGIN …');
      }
      const usernameTemplate = body.usernameTemplate ?? DEFAULT_USERNAME_TEMPLATE;
      try {
        parseUsernameTemplate(usernameTemplate);
      } catch (err) {
        if (err instanceof TemplateProblem) throw invalid('body.usernameTemplate', err.message);
        throw err;
      }

      // The database must be there and its admin role able to do the job, before anything is stored.
      try {
        const url = await connectionUrl(deps, p.tenantId, body);
        const admin = await targets.checkAdmin(url);
        if (admin.serverVersion < 140_000) throw new TargetMisconfigured('the database must be PostgreSQL 14 or later');
        if (!admin.superuser && !admin.createRole) {
          throw new TargetMisconfigured('the admin role cannot create roles: give it CREATEROLE');
        }
        if (!admin.superuser && !admin.canSignal) {
          throw new TargetMisconfigured(
            "the admin role cannot end a lease role's sessions: GRANT pg_signal_backend TO it",
          );
        }
      } catch (err) {
        if (err instanceof TargetMisconfigured || err instanceof TargetUnavailable) {
          throw new AppError('unprocessable', `the backend cannot be used: ${describeTargetError(err)}`, [
            { path: 'body.connectionSecret', message: describeTargetError(err) },
          ]);
        }
        throw err;
      }

      const fields = {
        id: newId(),
        name: body.name,
        engine: 'postgres' as const,
        connectionSecret: body.connectionSecret,
        creationStatements: body.creationStatements,
        revocationStatements: body.revocationStatements,
        renewStatements,
        defaultTtlSeconds: body.defaultTtlSeconds,
        maxTtlSeconds: body.maxTtlSeconds,
        usernameTemplate,
      };
      const seal = await deps.seals.backend(p.tenantId, fields);
      try {
        const row = await db.withTenant(p.tenantId, async (tx) => {
          const created = await queries.insertBackend(p.tenantId, { ...fields, seal, createdBy: p.identityId }, tx);
          await audit.appendInTx(tx, [
            auditEvent(ctx, {
              action: 'dynamic.create',
              outcome: 'allowed',
              resource: `dynamic/${body.name}`,
              details: {
                engine: 'postgres',
                connectionSecret: body.connectionSecret,
                defaultTtlSeconds: body.defaultTtlSeconds,
                maxTtlSeconds: body.maxTtlSeconds,
              },
            }),
          ]);
          return created;
        });
        return toBackend({ ...row, activeLeases: 0 });
      } catch (err) {
        if (pgErrorCode(err) === '23505') throw conflict(`a backend named ${body.name} already exists`);
        throw err;
      }
    },

    async list(ctx: RequestContext): Promise<PostgresBackendList> {
      const p = principalOf(ctx);
      const rows = await queries.backends(p.tenantId);
      await audit.record(auditEvent(ctx, { action: 'dynamic.list', outcome: 'allowed', resource: 'dynamic' }));
      return { items: rows.map(toBackend) };
    },

    async get(ctx: RequestContext, name: string): Promise<PostgresBackend> {
      const p = principalOf(ctx);
      const [row] = await queries.backends(p.tenantId, name);
      if (!row) throw notFound('backend');
      await audit.record(auditEvent(ctx, { action: 'dynamic.read', outcome: 'allowed', resource: `dynamic/${name}` }));
      return toBackend(row);
    },

    /** Refused while a lease of the backend may still hold a role: those must be revoked first. */
    async remove(ctx: RequestContext, name: string): Promise<void> {
      const p = principalOf(ctx);
      await db.withTenant(p.tenantId, async (tx) => {
        const row = await queries.lockBackend(p.tenantId, name, tx);
        if (!row) throw notFound('backend');
        const open = await queries.unrevokedOf(p.tenantId, row.id, tx);
        if (open > 0) {
          throw conflict(
            `${open} lease${open === 1 ? ' of this backend is' : 's of this backend are'} not revoked yet: ` +
              `revoke ${open === 1 ? 'it' : 'them'} first (DELETE /v1/leases?backend=${name})`,
          );
        }
        await queries.deleteBackend(p.tenantId, row.id, tx);
        await audit.appendInTx(tx, [
          auditEvent(ctx, { action: 'dynamic.delete', outcome: 'allowed', resource: `dynamic/${name}` }),
        ]);
      });
    },
  };
}

export type BackendService = ReturnType<typeof backendService>;
