import {
  type CreateDeploymentRequest,
  type CreatedDeployment,
  type CreateIntakeResponse,
  type Deployment,
  type DeploymentPage,
  type DeploymentPlan,
  type DeploymentPlanItem,
  type DeploymentReceipt,
  type DeploymentRevocation,
  type DeploymentSummary,
  type Generator,
  type PlanAction,
  type PlanDeploymentRequest,
  type PromptSpec,
  planActionFor,
  type RevokeDeploymentRequest,
  type RevokedDeployment,
  type SecretFormat,
  type SecretKind,
  type Strategy,
  strategyFor,
  type TierStrategy,
  tierKnown,
} from '@coffer/contracts';
import { auditEvent } from '../audit/audit.events.ts';
import type { AuditSink } from '../audit/audit.sink.ts';
import type { AuditEvent } from '../audit/audit.types.ts';
import { environmentHidden } from '../auth/authorize.ts';
import { type Principal, principalOf } from '../auth/principal.ts';
import { newId } from '../crypto/ids.ts';
import { type RowMacs, rowIntegrityError } from '../crypto/row-macs.ts';
import type { TenantKeyCache } from '../crypto/tenant-key-cache.ts';
import type { Database, Tx } from '../db/database.ts';
import type { LeaseService } from '../dynamic/leases.service.ts';
import { environmentNotFound, protectedRefusal } from '../environments/environment-gate.ts';
import type { EnvironmentQueries } from '../environments/environments.queries.ts';
import { AppError, conflict, forbidden, notFound } from '../errors/app-error.ts';
import type { CursorCodec } from '../http/cursor.ts';
import type { RequestContext } from '../http/request-context.ts';
import type { IntakeService } from '../intake/intake.service.ts';
import { generateValue } from '../rotation/generator.ts';
import type { VersionHolder } from '../rotation/revocation.service.ts';
import type { RotationService } from '../rotation/rotation.service.ts';
import { type ChangeNotice, notices, recordChange } from '../secrets/secret-changes.ts';
import { allowed, type DeploymentReads } from '../secrets/secret-reads.service.ts';
import { pathOf, type SecretWriter, writeTransaction } from '../secrets/secret-writes.ts';
import {
  type SecretPath,
  type SecretQueries,
  type SecretRow,
  secretMacFields,
  versionMacFields,
} from '../secrets/secrets.queries.ts';
import type { WebhookQueries } from '../webhooks/webhooks.queries.ts';
import {
  type BundleOwner,
  type DeploymentItemRow,
  type DeploymentQueries,
  type DeploymentRow,
  deploymentMacFields,
} from './deployments.queries.ts';

export interface DeploymentServiceDeps {
  db: Pick<Database, 'withTenant'>;
  queries: DeploymentQueries;
  secrets: Pick<SecretQueries, 'revokeVersion'>;
  keys: Pick<TenantKeyCache, 'get' | 'invalidate'>;
  writer: SecretWriter;
  audit: Pick<AuditSink, 'record' | 'appendInTx'>;
  webhooks: Pick<WebhookQueries, 'enqueueManyInTx'>;
  environments: Pick<EnvironmentQueries, 'get'>;
  cursors: CursorCodec;
  rotation: Pick<RotationService, 'rotateLocked'>;
  /** Makes the intake link a user-class prompt carries, in the deployment's transaction. */
  intake: Pick<IntakeService, 'createIntake'>;
  /** Dynamic database credentials made for a deployment end with it. */
  leases: Pick<LeaseService, 'revokeForDeploymentInTx' | 'kick'>;
  /**
   * Checks the row MACs of what decides a deployment: each secret's class and strategy when it is planned, the
   * deployment and its plan when it is read, run or revoked, the versions generated for it when they are revoked.
   */
  macs: Pick<RowMacs, 'checkSecret' | 'checkVersion' | 'checkDeployment'>;
}

/** How long the intake link of a deployment's prompt stays usable: a working day, as `coffer intake create`'s default. */
export const DEPLOYMENT_INTAKE_EXPIRES_IN = 86_400;

/**
 * What `generate` makes when neither the tier's strategy nor the rotation policy names a generator: 43 characters
 * of base64url, 258 bits from the CSPRNG.
 */
export const DEFAULT_GENERATOR: Generator = { length: 43, charset: 'base64url' };

/** The generator for a secret in a tier: its strategy's, else its rotation policy's, else the default. */
export function generatorFor(strategy: TierStrategy | null, row: Pick<SecretRow, 'generator'>): Generator {
  return strategy?.generator ?? (row.generator as Generator | null) ?? DEFAULT_GENERATOR;
}

/** One secret of a plan, before it is stored. */
interface Planned {
  row: SecretRow;
  path: string;
  action: PlanAction;
  reason: string;
  strategy: TierStrategy | null;
  prompt?: PromptSpec;
  intake?: CreateIntakeResponse;
  version: number | null;
}

const strategyOf = (row: Pick<SecretRow, 'strategy'>) => (row.strategy ?? null) as Strategy | null;

function bundleOwner(ref: string): BundleOwner {
  const [kind, owner] = ref.split('/') as [SecretKind, string];
  return { kind, owner };
}

const actor = (id: string | null, name: string | null) => ({ id, name });

function countsOf(actions: readonly PlanAction[]): DeploymentSummary['counts'] {
  const counts = { strip: 0, generate: 0, prompt: 0, inject: 0 };
  for (const a of actions) counts[a]++;
  return counts;
}

function toSummary(d: DeploymentRow, actions: readonly PlanAction[]): DeploymentSummary {
  return {
    id: d.id,
    name: d.name,
    environment: d.environment,
    tier: d.tier,
    bundles: d.bundles,
    createdAt: d.createdAt.toISOString(),
    createdBy: actor(d.createdBy, d.createdByName),
    revokedAt: d.revokedAt?.toISOString() ?? null,
    counts: countsOf(actions),
  };
}

function itemOf(i: DeploymentItemRow): DeploymentPlanItem {
  return {
    path: `${i.kind}/${i.owner}/${i.name}`,
    action: i.action,
    reason: i.reason,
    class: i.class,
    version: i.version,
    ...(i.prompt ? { prompt: i.prompt as PromptSpec } : {}),
  };
}

function plannedItem(i: Planned): DeploymentPlanItem {
  return {
    path: i.path,
    action: i.action,
    reason: i.reason,
    class: i.row.class,
    version: i.version,
    ...(i.prompt ? { prompt: i.prompt } : {}),
    ...(i.intake ? { intake: i.intake } : {}),
  };
}

/** What a person is asked for a prompted secret: the tier's prompt, else the secret's name, description and format. */
function promptOf(row: SecretRow, strategy: TierStrategy | null): PromptSpec {
  const own = strategy?.prompt;
  const format = own?.format ?? (row.format as SecretFormat | null) ?? undefined;
  const help = own?.help ?? row.description ?? undefined;
  return { label: own?.label ?? row.name, ...(help ? { help } : {}), ...(format ? { format } : {}) };
}

/**
 * Deployments: a plan per secret from its strategy (or class) for the tier, service secrets generated fresh for
 * each deployment as versions that belong to it (their values shown once, in the answer, and never logged or
 * audited), the record of what each deployment received, and a revocation that rotates what was generated for it.
 */
export function deploymentService(deps: DeploymentServiceDeps) {
  const { queries, writer, audit, macs } = deps;

  /**
   * The deployment with its plan, once its MAC holds: coffer_app may update deployments and add plan items, so an
   * un-revoked deployment, another environment or bundle, or an item turned from strip to inject fails here.
   */
  async function checked(
    tenantId: string,
    id: string,
    tx?: Tx,
    lock = false,
    /** Whether the caller may know of it at all: if not, it is not found, before any check could say it exists. */
    visible: (d: DeploymentRow) => boolean = () => true,
  ): Promise<{ d: DeploymentRow; items: DeploymentItemRow[] } | undefined> {
    const d = await queries.get(tenantId, id, tx, lock);
    if (!d || !visible(d)) return undefined;
    const items = await queries.items(tenantId, [d.id], tx);
    macs.checkDeployment(d.mac, deploymentMacFields(d, items));
    return { d, items };
  }

  /**
   * The one-time link where the person who holds a prompted value supplies it: an intake link into the secret, in
   * its environment, with the prompt's label, help and format, made in the deployment's transaction (its audit event
   * and row commit with the deployment, or not at all). The intake service compare-and-sets on the version it finds
   * under the deployment's lock (`ifVersion`), so a value written meanwhile makes the link store nothing. The plan
   * already refused a caller that may not make the link (no write capability, or a protected environment for a
   * service), so every prompt of a deployment has one.
   */
  async function promptIntake(
    ctx: RequestContext,
    item: { path: SecretPath; prompt: PromptSpec; ifVersion: number; deploymentId: string },
    protectedEnv: boolean,
    tx: Tx,
  ): Promise<CreateIntakeResponse> {
    const p = principalOf(ctx);
    if (!allowed(p, 'intake.create', item.path) || (protectedEnv && p.role !== 'admin')) {
      throw forbidden(
        `this identity may not make the intake link of ${item.path.kind}/${item.path.owner}/${item.path.name}`,
      );
    }
    const { environment, kind, owner, name } = item.path;
    return deps.intake.createIntake(
      ctx,
      {
        path: `${kind}/${owner}/${name}`,
        env: environment,
        format: item.prompt.format,
        expiresInSeconds: DEPLOYMENT_INTAKE_EXPIRES_IN,
        prompt: { label: item.prompt.label, help: item.prompt.help },
      },
      tx,
    );
  }

  /**
   * The plan, secret by secret, in bundle order then name order: each bundle's live secrets the caller may list, and
   * for each what the tier does with it (planActionFor). Refuses an environment the caller cannot see or that is not
   * there (404), a bundle with nothing in it (422), a tier nothing knows (422), and, for a service, generating what it
   * may not write or writing to a protected environment (403).
   */
  async function plan(
    p: Principal,
    body: PlanDeploymentRequest,
    tx: Tx,
    lock: boolean,
  ): Promise<{ items: Planned[]; protectedEnv: boolean }> {
    if (environmentHidden(p, body.environment)) throw environmentNotFound(body.environment);
    const env = await deps.environments.get(p.tenantId, body.environment, tx, true);
    if (!env) throw environmentNotFound(body.environment);
    const rows = (
      await queries.bundleSecrets(p.tenantId, body.environment, body.bundles.map(bundleOwner), lock, tx)
    ).filter((r) => allowed(p, 'secrets.list', r));
    // Class and strategy decide each action (a strip turned into an inject by coffer_app must not ship): MAC first.
    for (const r of rows) macs.checkSecret(r.mac, secretMacFields(r));
    const byBundle = body.bundles.map((b) => rows.filter((r) => `${r.kind}/${r.owner}` === b));
    const empty = body.bundles.flatMap((b, i) =>
      byBundle[i]?.length
        ? []
        : [{ path: `body.bundles.${i}`, message: `${b} has no live secret this identity may list` }],
    );
    if (empty.length > 0) {
      throw new AppError(
        'unprocessable',
        `nothing to deploy from ${empty.length === 1 ? 'a bundle' : `${empty.length} bundles`} in environment ${body.environment}: ${empty.map((e) => e.message).join('; ')}`,
        empty,
      );
    }
    const ordered = byBundle.flat();
    if (
      !tierKnown(
        body.tier,
        ordered.map((r) => ({ strategy: strategyOf(r) })),
      )
    ) {
      const message = `tier ${body.tier} is not built in (local, desktop, cloud) and no secret of these bundles names it in its strategy`;
      throw new AppError('unprocessable', message, [{ path: 'body.tier', message }]);
    }
    const items: Planned[] = ordered.map((row) => {
      const decided = planActionFor({ class: row.class, strategy: strategyOf(row) }, body.tier);
      return {
        row,
        path: pathOf(row),
        action: decided.action,
        reason: decided.reason,
        strategy: decided.strategy,
        version: decided.action === 'inject' ? row.currentVersion : null,
        ...(decided.action === 'prompt' ? { prompt: promptOf(row, decided.strategy) } : {}),
      };
    });
    const generating = items.filter((i) => i.action === 'generate');
    // Each prompt carries the intake link its value arrives through, which only a caller that may write it can make.
    const prompting = items.filter((i) => i.action === 'prompt');
    const denied = [
      ...generating.filter((i) => !allowed(p, 'secrets.write', i.row)).map((i) => ({ i, why: 'generate' })),
      ...prompting
        .filter((i) => !allowed(p, 'intake.create', i.row))
        .map((i) => ({ i, why: 'make the intake link of' })),
    ];
    if (denied.length > 0) {
      throw new AppError(
        'forbidden',
        'this identity may not generate or prompt for every secret the deployment needs (no write capability)',
        denied.map(({ i, why }) => ({ path: i.path, message: `no write capability to ${why} it` })),
      );
    }
    if ((generating.length > 0 || prompting.length > 0) && env.protected && p.role !== 'admin') {
      throw protectedRefusal(env.slug);
    }
    // `generated` is keyed by name: two bundles generating the same name would hand out one value for two secrets.
    const seen = new Map<string, string>();
    const clashes = generating.flatMap((i) => {
      const other = seen.get(i.row.name);
      seen.set(i.row.name, i.path);
      return other ? [{ path: i.path, message: `generates ${i.row.name}, as ${other} does` }] : [];
    });
    if (clashes.length > 0) {
      throw new AppError('unprocessable', 'two secrets of the deployment generate the same name', clashes);
    }
    return { items, protectedEnv: env.protected };
  }

  async function summaries(tenantId: string, rows: DeploymentRow[]): Promise<DeploymentSummary[]> {
    const items = await queries.items(
      tenantId,
      rows.map((r) => r.id),
    );
    return rows.map((r) =>
      toSummary(
        r,
        items.filter((i) => i.deploymentId === r.id).map((i) => i.action),
      ),
    );
  }

  /** What the bundle routes need to read for a deployment (`?deployment=`). */
  const reads: DeploymentReads = {
    async planFor(tenantId, deploymentId, environment, kind, owner) {
      const found = await checked(tenantId, deploymentId);
      if (!found) throw notFound('deployment');
      const { d } = found;
      if (d.revokedAt) throw new AppError('gone', `deployment ${d.id} was revoked at ${d.revokedAt.toISOString()}`);
      if (d.environment !== environment) {
        const message = `deployment ${d.id} is in environment ${d.environment}, not ${environment}`;
        throw new AppError('unprocessable', message, [{ path: 'query.env', message }]);
      }
      const bundle = `${kind}/${owner}`;
      if (!d.bundles.includes(bundle)) {
        const message = `${bundle} is not a bundle of deployment ${d.id} (${d.bundles.join(', ')})`;
        throw new AppError('unprocessable', message, [{ path: 'params', message }]);
      }
      const items = found.items.filter((i) => i.kind === kind && i.owner === owner);
      return {
        current: items.filter((i) => i.action === 'inject').map((i) => i.name),
        pinned: items
          .filter((i) => i.action === 'generate' && i.version !== null)
          .map((i) => ({ name: i.name, version: i.version as number })),
      };
    },

    async received(ctx, deploymentId, rows) {
      const p = principalOf(ctx);
      await queries.receive(
        p.tenantId,
        rows.map((r) => ({
          deploymentId,
          secretId: r.secretId,
          path: r.path,
          version: r.version,
          action: r.action,
          via: 'run' as const,
          identityId: p.identityId,
          identityName: p.name,
        })),
      );
    },
  };

  /**
   * The live deployment a version was generated for, if any (a consumer of that version until it is revoked). The
   * version's MAC vouches for its deployment_id and the deployment's for its revocation, so coffer_app cannot hide a
   * holder from a revocation's consumers check by clearing either.
   */
  async function holders(tenantId: string, secretId: string, version: number, tx?: Tx): Promise<VersionHolder[]> {
    const v = await queries.version(tenantId, secretId, version, tx);
    if (!v) return [];
    macs.checkVersion(v.mac, versionMacFields(tenantId, v));
    if (v.deploymentId === null) return [];
    const found = await checked(tenantId, v.deploymentId, tx);
    if (!found || found.d.revokedAt) return [];
    const { d } = found;
    return [
      {
        deploymentId: d.id,
        name: d.name,
        createdAt: d.createdAt,
        createdBy: d.createdBy,
        createdByName: d.createdByName,
      },
    ];
  }

  return {
    reads,
    holders,

    async plan(ctx: RequestContext, body: PlanDeploymentRequest): Promise<DeploymentPlan> {
      const p = principalOf(ctx);
      const { items } = await deps.db.withTenant(p.tenantId, (tx) => plan(p, body, tx, false));
      await audit.record(
        auditEvent(ctx, {
          action: 'deployments.plan',
          outcome: 'allowed',
          resource: 'deployments',
          environment: body.environment,
          details: { tier: body.tier, bundles: body.bundles.join(','), ...countsOf(items.map((i) => i.action)) },
        }),
      );
      return { environment: body.environment, tier: body.tier, bundles: body.bundles, plan: items.map(plannedItem) };
    },

    async create(ctx: RequestContext, body: CreateDeploymentRequest): Promise<CreatedDeployment> {
      const p = principalOf(ctx);
      const id = newId();
      return writeTransaction(
        deps,
        p.tenantId,
        async (keySet, tx) => {
          const { items, protectedEnv } = await plan(p, body, tx, true);
          const d = await queries.insert(
            p.tenantId,
            {
              id,
              name: body.name,
              environment: body.environment,
              tier: body.tier,
              bundles: body.bundles,
              createdBy: p.identityId,
              createdByName: p.name,
            },
            tx,
          );
          // Names are keys: no prototype, so a name such as `constructor` is only ever an own entry.
          const generated: Record<string, string> = Object.create(null);
          const events: AuditEvent[] = [];
          const changes: ChangeNotice[] = [];
          for (const i of items) {
            if (i.action !== 'generate') continue;
            const value = generateValue(generatorFor(i.strategy, i.row));
            writer.validate({ values: [{ value, where: i.path }] });
            const problem = await writer.formatProblem((i.row.format ?? null) as SecretFormat | null, value, tx);
            if (problem) {
              throw new AppError(
                'unprocessable',
                `the value generated for ${i.path} does not satisfy its format (${problem}): give its ${body.tier} strategy a generator that does`,
                [{ path: i.path, message: problem }],
              );
            }
            const version = i.row.currentVersion + 1;
            const applied = await writer.applyWrite(
              p.identityId,
              p.tenantId,
              i.row,
              i.row,
              { value },
              { create: false, version },
              keySet,
              tx,
              {},
              { deploymentId: id },
            );
            i.version = version;
            generated[i.row.name] = value;
            events.push(
              writer.writeEvent(ctx, applied.row, version, keySet, value, false, 'deployment', { deployment: id }),
            );
            changes.push(notices.written(p.tenantId, applied.row, version, false, { deployment: id }));
          }
          for (const i of items) {
            if (i.action !== 'prompt' || !i.prompt) continue;
            const link = await promptIntake(
              ctx,
              { path: i.row, prompt: i.prompt, ifVersion: i.row.currentVersion, deploymentId: id },
              protectedEnv,
              tx,
            );
            i.intake = link;
          }
          const stored = await queries.insertItems(
            p.tenantId,
            items.map((i, position) => ({
              deploymentId: id,
              position,
              secretId: i.row.id,
              kind: i.row.kind,
              owner: i.row.owner,
              name: i.row.name,
              action: i.action,
              reason: i.reason,
              class: i.row.class,
              version: i.version,
              prompt: (i.prompt ?? null) as Record<string, unknown> | null,
            })),
            tx,
          );
          await queries.seal(p.tenantId, d, stored, tx);
          // What was handed out here is received here: the generated values, by whoever made the deployment.
          await queries.receive(
            p.tenantId,
            items
              .filter((i) => i.action === 'generate' && i.version !== null)
              .map((i) => ({
                deploymentId: id,
                secretId: i.row.id,
                path: i.path,
                version: i.version as number,
                action: 'generate' as const,
                via: 'created' as const,
                identityId: p.identityId,
                identityName: p.name,
              })),
            tx,
          );
          const counts = countsOf(items.map((i) => i.action));
          events.push(
            auditEvent(ctx, {
              action: 'deployments.create',
              outcome: 'allowed',
              resource: `deployments/${id}`,
              environment: body.environment,
              details: { name: body.name, tier: body.tier, bundles: body.bundles.join(','), ...counts },
            }),
          );
          await recordChange(deps, tx, p.tenantId, { events, notices: changes });
          return {
            ...toSummary(
              d,
              items.map((i) => i.action),
            ),
            plan: items.map(plannedItem),
            generated,
          };
        },
        (lost) => conflict(`${lost.path} changed concurrently; retry`),
      );
    },

    async list(
      ctx: RequestContext,
      q: { env?: string | undefined; secret?: string | undefined; limit: number; cursor?: string | undefined },
    ): Promise<DeploymentPage> {
      const p = principalOf(ctx);
      const scope = {
        route: 'deployments.list',
        tenantId: p.tenantId,
        identityId: p.identityId,
        filters: { env: q.env, secret: q.secret },
      };
      const cursor = deps.cursors.open(scope, q.cursor, ['i'] as const);
      const [kind, owner, name] = (q.secret ?? '').split('/') as [string, string, string];
      const rows = await queries.page(
        p.tenantId,
        { environment: q.env, secret: q.secret ? { kind, owner, name } : undefined },
        cursor?.i,
        q.limit + 1,
      );
      const page = rows.slice(0, q.limit);
      const last = page.at(-1);
      await audit.record(
        auditEvent(ctx, {
          action: 'deployments.list',
          outcome: 'allowed',
          resource: q.secret ?? 'deployments',
          ...(q.env ? { environment: q.env } : {}),
          details: { count: page.length },
        }),
      );
      return {
        items: await summaries(p.tenantId, page),
        nextCursor: rows.length > q.limit && last ? deps.cursors.seal(scope, { i: last.id }) : null,
      };
    },

    async get(ctx: RequestContext, id: string): Promise<Deployment> {
      const p = principalOf(ctx);
      const found = await checked(p.tenantId, id, undefined, false, (d) => !environmentHidden(p, d.environment));
      // A service sees a deployment only where it sees the environment and may know something of its plan.
      if (!found) throw notFound('deployment');
      const { d } = found;
      const where = (kind: SecretKind, owner: string, name: string) => ({
        environment: d.environment,
        kind,
        owner,
        name,
      });
      // Read or list: a service that runs the deployment (coffer run --deployment) may only read its secrets.
      // Admins and auditors see every secret's metadata; a service what its policies grant.
      const knows = (i: DeploymentItemRow) =>
        p.role !== 'service' ||
        allowed(p, 'secrets.list', where(i.kind, i.owner, i.name)) ||
        allowed(p, 'secrets.read', where(i.kind, i.owner, i.name));
      const items = found.items.filter(knows);
      if (items.length === 0 && p.role === 'service') throw notFound('deployment');
      const visible = new Set(items.map((i) => `${i.kind}/${i.owner}/${i.name}`));
      const receipts: DeploymentReceipt[] = (await queries.receipts(p.tenantId, id))
        .filter((r) => visible.has(r.path))
        .map((r) => ({
          path: r.path,
          version: r.version,
          action: r.action,
          via: r.via,
          by: actor(r.identityId, r.identityName),
          firstAt: r.firstAt.toISOString(),
          lastAt: r.lastAt.toISOString(),
          reads: r.reads,
        }));
      await audit.record(
        auditEvent(ctx, {
          action: 'deployments.read',
          outcome: 'allowed',
          resource: `deployments/${id}`,
          environment: d.environment,
        }),
      );
      const revocation = (d.revocation ?? null) as DeploymentRevocation | null;
      return {
        ...toSummary(
          d,
          items.map((i) => i.action),
        ),
        plan: items.map(itemOf),
        received: receipts,
        revocation:
          revocation && p.role === 'service'
            ? {
                ...revocation,
                rotated: revocation.rotated.filter((r) => visible.has(r.path)),
                revokedVersions: revocation.revokedVersions.filter((r) => visible.has(r.path)),
              }
            : revocation,
      };
    },

    async revoke(ctx: RequestContext, id: string, body: RevokeDeploymentRequest): Promise<RevokedDeployment> {
      const p = principalOf(ctx);
      const revoked = await writeTransaction(deps, p.tenantId, async (keySet, tx) => {
        const found = await checked(p.tenantId, id, tx, true);
        if (!found) throw notFound('deployment');
        const { d, items } = found;
        if (d.revokedAt) throw conflict(`deployment ${id} was already revoked at ${d.revokedAt.toISOString()}`);
        const revokedAt = new Date();
        const notes = body.notes ?? `revocation of deployment ${d.name}`;
        // What was generated for it is what its plan (under its MAC) says; each version's MAC confirms that it is this
        // deployment's and whether it was revoked already, so a deployment_id or revoked_at coffer_app changed stops
        // the revocation here rather than leaving a generated value served.
        const planned = items.flatMap((i) =>
          i.action === 'generate' && i.version !== null ? [{ secretId: i.secretId, version: i.version }] : [],
        );
        const made = await queries.generatedVersions(p.tenantId, id, planned, tx);
        for (const v of made) {
          macs.checkVersion(v.mac, versionMacFields(p.tenantId, v));
          const inPlan = planned.some((x) => x.secretId === v.secretId && x.version === v.version);
          if (v.deploymentId !== id || !inPlan) throw rowIntegrityError();
        }
        const bySecret = new Map<string, typeof made>();
        for (const v of made) bySecret.set(v.secretId, [...(bySecret.get(v.secretId) ?? []), v]);
        const rotated: DeploymentRevocation['rotated'] = [];
        const revokedVersions: DeploymentRevocation['revokedVersions'] = [];
        const events: AuditEvent[] = [];
        const changes: ChangeNotice[] = [];
        for (const row of await queries.lockSecrets(p.tenantId, [...bySecret.keys()], tx)) {
          // Its current version and strategy decide whether and how it is rotated.
          macs.checkSecret(row.mac, secretMacFields(row));
          const mine = bySecret.get(row.id) ?? [];
          const path = pathOf(row);
          // Only a secret whose current value is the deployment's is rotated: a later deployment's own value, made
          // since, is that deployment's, and revoking this one must not cut it off.
          if (!row.deletedAt && mine.some((v) => v.version === row.currentVersion)) {
            const value = generateValue(generatorFor(strategyFor(strategyOf(row), d.tier), row));
            writer.validate({ values: [{ value, where: path }] });
            const after = await deps.rotation.rotateLocked(ctx, p.tenantId, row, value, 'manual', keySet, tx, {
              notes,
              deployment: id,
            });
            rotated.push({ path, fromVersion: row.currentVersion, toVersion: after.currentVersion });
          }
          for (const v of mine) {
            if (v.revokedAt) continue;
            const cutAt = await deps.secrets.revokeVersion(p.tenantId, row.id, v.version, p.identityId, tx);
            revokedVersions.push({ path, version: v.version });
            changes.push(
              notices.versionRevoked(p.tenantId, row, v.version, cutAt ?? revokedAt, { forced: true, deployment: id }),
            );
            events.push(
              auditEvent(ctx, {
                action: 'secrets.revoke',
                outcome: 'allowed',
                resource: path,
                environment: row.environment,
                version: v.version,
                details: {
                  forced: true,
                  deployment: id,
                  notes,
                  ...(row.ownerTeam ? { ownerTeam: row.ownerTeam } : {}),
                },
              }),
            );
          }
        }
        // Marked in this transaction, dropped right after it commits (and by the expiry job, if this process dies).
        const leasesRevoked = (await deps.leases.revokeForDeploymentInTx(p.tenantId, id, tx)).length;
        const revocation: DeploymentRevocation = {
          revokedAt: revokedAt.toISOString(),
          revokedBy: actor(p.identityId, p.name),
          notes: body.notes ?? null,
          rotated,
          revokedVersions,
          leasesRevoked,
        };
        await queries.markRevoked(p.tenantId, id, revokedAt, revocation, items, tx);
        events.push(
          auditEvent(ctx, {
            action: 'deployments.revoke',
            outcome: 'allowed',
            resource: `deployments/${id}`,
            environment: d.environment,
            details: {
              rotated: rotated.length,
              revoked: revokedVersions.length,
              leases: leasesRevoked,
              ...(body.notes ? { notes: body.notes } : {}),
            },
          }),
        );
        changes.push({
          event: 'deployment.revoked',
          payload: {
            tenantId: p.tenantId,
            deployment: id,
            name: d.name,
            environment: d.environment,
            tier: d.tier,
            rotated,
            revokedVersions,
            leasesRevoked,
            revokedAt: revokedAt.toISOString(),
          },
        });
        await recordChange(deps, tx, p.tenantId, { events, notices: changes });
        return { id, ...revocation };
      });
      if (revoked.leasesRevoked > 0) deps.leases.kick();
      return revoked;
    },
  };
}

export type DeploymentService = ReturnType<typeof deploymentService>;
