import {
  type AuditEventView,
  type AuditExportQuery,
  type AuditFollowQuery,
  type AuditQuery,
  type AuditVerifyResult,
  type Bundle,
  type BundleWriteRequest,
  type BundleWriteResponse,
  buildPath,
  type CheckRequest,
  type CheckResponse,
  type CreateDeploymentRequest,
  type CreatedDeployment,
  type CreateIntakeResponse,
  DEFAULT_ENVIRONMENT,
  type Deployment,
  type DeploymentPlan,
  type DeploymentSummary,
  type IntakeLink,
  type IntakeList,
  type IntakePrompt,
  type IntakeView,
  type InventoryItem,
  type InventoryQuery,
  type Lease,
  type LeaseCredentials,
  type LeaseListQuery,
  type ListDeploymentsQuery,
  type ListIntakesQuery,
  type ListSecretsQuery,
  type PatchSecretRequest,
  type PlanDeploymentRequest,
  type PutSecretRequest,
  type RevokedDeployment,
  type RevokedVersion,
  type RotationStatus,
  type RouteDef,
  type RouteInput,
  type RouteName,
  type RouteOutput,
  type Routes,
  routes,
  type SecretConsumers,
  type SecretFormat,
  type SecretMetadata,
  type SecretVersions,
  type SecretWithValue,
  type SubmitIntakeResponse,
  TokenResponse,
  type WhoAmI,
} from '@coffer/contracts';
import type { z } from 'zod';
import { auditEventsOf } from './audit-follow.ts';
import { type CacheOptions, ReadCache } from './cache.ts';
import { CofferError, errorFromResponse } from './errors.ts';
import { formatSecretPath, type OwnerPath, parseOwnerPath, parseSecretPath, type SecretPath } from './paths.ts';
import type { SubjectTokenSource } from './token-source.ts';

export interface CofferClientOptions {
  /** e.g. https://coffer.internal:7400 */
  baseUrl: string;
  /** Client credentials: the SDK logs in, caches the token and renews it before it expires. */
  clientId?: string | undefined;
  clientSecret?: string | undefined;
  /**
   * Workload identity federation instead of a client secret: the identity's client id, and where the platform's
   * token comes from (a function returning a JWT, or `tokenFile(path)`, re-read at every login so a rotated
   * projected token is picked up). The SDK exchanges it for a Coffer token and again before that one expires.
   */
  federation?: { identity: string; subjectToken: SubjectTokenSource } | undefined;
  /**
   * Another way to a fresh token, called instead of a login when the current one is about to expire or was refused:
   * the CLI refreshes a person's session with it. Its answer is used as the SDK's own login would be.
   */
  renewToken?: (() => Promise<{ accessToken: string; expiresAt: number }>) | undefined;
  /** Or a ready-made access token (used as-is; renewed only if client credentials are given too). */
  token?: string | undefined;
  /** When the given `token` expires (ms since the epoch), so it is renewed in time. Default: never. */
  tokenExpiresAt?: number | undefined;
  /** Attempts for requests that are safe to repeat, on 503, 429 and network errors. Default 3. */
  maxAttempts?: number;
  /** Per-request timeout in ms (until the response headers, for streams). Default 10 000. */
  timeoutMs?: number;
  /** Base backoff in ms (doubled each attempt, with full jitter, capped at 5 s). Default 100. */
  backoffMs?: number;
  /**
   * The environment (`staging`, `production`, …) every secret, bundle, list, rotation and audit call of this client
   * is in, unless a call names its own `env`. Default: the tenant's `default`. One client per environment.
   */
  environment?: string | undefined;
  /** Keep what `getSecret` and `getBundle` read, for services that read a secret on every request. */
  cache?: CacheOptions;
  /** Told about every token the SDK obtains (the CLI keeps it in its credentials file). */
  onToken?: (token: { accessToken: string; expiresAt: number }) => void;
  /** Sends `x-request-id: <prefix><n>` with every request, so audit events can be traced back to this client. */
  requestIdPrefix?: string;
  fetch?: typeof fetch;
  userAgent?: string;
  /** The clock, in ms since the epoch (tests move it to exercise renewal). */
  now?: () => number;
}

type RequestInput = { params?: Record<string, string | number>; query?: Record<string, unknown>; body?: unknown };

interface RequestOptions {
  /** Overrides the attempts the method allows. */
  attempts?: number;
  /** Return the successful Response unread (for `produces` routes). */
  stream?: boolean;
  /**
   * Called when a retry fails with a conflict or not_found after an earlier attempt was lost in transit (so it may
   * have been applied): returns `{ value }` if the earlier attempt did apply, undefined if that cannot be shown.
   */
  resolve?: (err: CofferError) => Promise<{ value: unknown } | undefined>;
  /** Extra request headers (Last-Event-ID). */
  headers?: Record<string, string>;
  /** Aborts the request, and the stream once it has started. */
  signal?: AbortSignal | undefined;
}

const IDEMPOTENT = new Set(['GET', 'PUT', 'DELETE']);
/** Renew this long before the token expires (at most half its lifetime), so no request leaves with a lapsing token. */
const RENEW_MARGIN_MS = 30_000;
const MAX_BACKOFF_MS = 5_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const isRetryable = (err: unknown): err is CofferError =>
  err instanceof CofferError && (err.code === 'network_error' || err.status === 503 || err.status === 429);

/** The pages of a list, and (as an async iterable) every item across them. */
export class Paginator<T> implements AsyncIterable<T> {
  constructor(
    private readonly fetchPage: (cursor: string | undefined) => Promise<{ items: T[]; nextCursor: string | null }>,
  ) {}

  async *pages(): AsyncGenerator<{ items: T[]; nextCursor: string | null }> {
    let cursor: string | undefined;
    do {
      const page = await this.fetchPage(cursor);
      yield page;
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    for await (const page of this.pages()) yield* page.items;
  }

  async all(): Promise<T[]> {
    const out: T[] = [];
    for await (const item of this) out.push(item);
    return out;
  }
}

/** A streamed audit export: iterate it for lines (NDJSON records), or read `body` for the raw bytes. */
export class AuditExport implements AsyncIterable<string> {
  constructor(
    readonly body: ReadableStream<Uint8Array>,
    readonly contentType: string,
  ) {}

  async *[Symbol.asyncIterator](): AsyncGenerator<string> {
    const decoder = new TextDecoder();
    let buffered = '';
    for await (const chunk of this.body as unknown as AsyncIterable<Uint8Array>) {
      buffered += decoder.decode(chunk, { stream: true });
      let nl = buffered.indexOf('\n');
      while (nl >= 0) {
        yield buffered.slice(0, nl).replace(/\r$/, '');
        buffered = buffered.slice(nl + 1);
        nl = buffered.indexOf('\n');
      }
    }
    buffered += decoder.decode();
    if (buffered.length > 0) yield buffered;
  }
}

const withoutValue = (s: SecretWithValue): SecretMetadata => {
  const { value: _value, ...metadata } = s;
  return metadata;
};

const currentVersionOf = (v: SecretVersions): number | null =>
  v.items.find((i) => i.state === 'current')?.version ?? null;

/**
 * A typed client over the contracts' route table: `call(name, input)` exists for every route, with the input
 * and output types of that route, and every response is parsed with the route's own schema. The named methods
 * (`getSecret`, `getBundle`, `rotate`, …) are the same calls with paths as strings, a read cache, and retries
 * that are safe for writes.
 */
export class CofferClient {
  private token: { value: string; expiresAt: number; lifetimeMs: number } | null = null;
  private login: Promise<string> | null = null;
  private readonly fetchImpl: typeof fetch;
  private readonly baseUrl: string;
  private readonly now: () => number;
  private readonly cache: ReadCache | null;
  private requestCounter = 0;

  constructor(private readonly o: CofferClientOptions) {
    this.fetchImpl = o.fetch ?? globalThis.fetch;
    this.baseUrl = o.baseUrl.replace(/\/+$/, '');
    this.now = o.now ?? Date.now;
    if (o.token) {
      const expiresAt = o.tokenExpiresAt ?? Number.POSITIVE_INFINITY;
      this.token = { value: o.token, expiresAt, lifetimeMs: Number.POSITIVE_INFINITY };
    }
    this.cache = o.cache ? new ReadCache(o.cache, this.now) : null;
  }

  /** Calls one route of the contracts. Throws CofferError on any non-2xx answer. */
  async call<N extends RouteName>(
    name: N,
    ...args: object extends RouteInput<Routes[N]> ? [input?: RouteInput<Routes[N]>] : [input: RouteInput<Routes[N]>]
  ): Promise<RouteOutput<Routes[N]>> {
    return (await this.request(routes[name], (args[0] ?? {}) as RequestInput)) as RouteOutput<Routes[N]>;
  }

  // ---- identity -------------------------------------------------------------------------------------------------

  whoami(): Promise<WhoAmI> {
    return this.call('whoami');
  }

  // ---- secrets --------------------------------------------------------------------------------------------------

  /**
   * A secret's value and metadata (`sandbox/sbx-42/DB_URL`), at its current version or a given one. With a cache
   * configured, served from memory within its ttl and replaced when the background poll sees a new version.
   */
  async getSecret(
    path: string | SecretPath,
    opts: { version?: number | 'previous'; fresh?: boolean } = {},
  ): Promise<SecretWithValue> {
    const p = parseSecretPath(path);
    const load = async () => {
      const data = await this.call('getSecret', {
        params: p,
        ...(opts.version !== undefined ? { query: { version: opts.version } } : {}),
      });
      return { data, signature: String(data.version) };
    };
    if (!this.cache || opts.fresh) return (await load()).data;
    const key = `secret:${p.kind}/${p.owner}/${p.name}@${opts.version ?? 'current'}`;
    const pinned = typeof opts.version === 'number';
    return { ...(await this.cache.read(key, `${p.kind}/${p.owner}/${p.name}`, pinned, load)) };
  }

  /**
   * Creates the secret or adds a version. Retried on 503 and lost connections like every PUT; with `ifVersion`
   * (compare-and-set), a retry that finds the version already moved checks whether the move was this write (same
   * value, one version on) and then reports success instead of a conflict.
   */
  async putSecret(
    path: string | SecretPath,
    value: string,
    opts: Omit<z.input<typeof PutSecretRequest>, 'value'> = {},
  ): Promise<SecretMetadata> {
    const p = parseSecretPath(path);
    const body = { ...opts, value };
    try {
      return (await this.request(
        routes.putSecret,
        { params: p, body },
        {
          resolve: async (err) => {
            if (err.code !== 'conflict' || opts.ifVersion === undefined) return undefined;
            const now = await this.call('getSecret', { params: p });
            return now.version === opts.ifVersion + 1 && now.value === value ? { value: withoutValue(now) } : undefined;
          },
        },
      )) as SecretMetadata;
    } finally {
      this.cache?.invalidate(`${p.kind}/${p.owner}/${p.name}`);
    }
  }

  /** Metadata only (description, tags, format, expiry, rotation policy): never a new version. */
  async patchSecret(path: string | SecretPath, patch: z.input<typeof PatchSecretRequest>): Promise<SecretMetadata> {
    return this.call('patchSecret', { params: parseSecretPath(path), body: patch });
  }

  /** Soft delete (restorable within the recovery window), or erase for good with `purge`. */
  async deleteSecret(path: string | SecretPath, opts: { purge?: boolean } = {}): Promise<void> {
    const p = parseSecretPath(path);
    try {
      await this.request(
        routes.deleteSecret,
        { params: p, query: { purge: opts.purge ? 'true' : 'false' } },
        // A delete whose first attempt was lost and whose retry finds nothing has done what was asked.
        { resolve: async (err) => (err.code === 'not_found' ? { value: undefined } : undefined) },
      );
    } finally {
      this.cache?.invalidate(`${p.kind}/${p.owner}/${p.name}`);
    }
  }

  async restoreSecret(path: string | SecretPath): Promise<SecretMetadata> {
    const p = parseSecretPath(path);
    const restored = await this.call('restoreSecret', { params: p });
    this.cache?.invalidate(`${p.kind}/${p.owner}/${p.name}`);
    return restored;
  }

  /**
   * Checks secrets against the expectations of a manifest (exists, live, unexpired, well-formed, not overdue) on
   * the server, which needs only `list` on each path and never sends a value back. A check only reads, so a failed
   * attempt is retried like a GET.
   */
  async check(
    secrets: readonly (Omit<CheckRequest['secrets'][number], 'required'> & { required?: boolean })[],
  ): Promise<CheckResponse> {
    const body = { secrets: secrets.map((s) => ({ ...s, required: s.required ?? true })) };
    return (await this.request(routes.checkSecrets, { body }, { attempts: this.o.maxAttempts ?? 3 })) as CheckResponse;
  }

  /** Every version of a secret, newest first (metadata only). */
  async secretVersions(path: string | SecretPath): Promise<SecretVersions> {
    return this.call('listSecretVersions', { params: parseSecretPath(path) });
  }

  /**
   * A new current version, from `value` or the secret's generator. POST is not idempotent, so the retry is
   * guarded: the SDK reads the current version first and, after a failed attempt, retries only if the version has
   * not moved. If it moved, the rotation may have happened: with a given value the SDK checks whether it is the
   * one now stored; otherwise it throws `conflict` rather than rotate twice. Without read or list access to the
   * secret there is no guard, so there is no retry either.
   */
  async rotate(path: string | SecretPath, opts: { value?: string; notes?: string } = {}): Promise<SecretMetadata> {
    const p = parseSecretPath(path);
    const where = `${p.kind}/${p.owner}/${p.name}`;
    const body = {
      ...(opts.value !== undefined ? { value: opts.value } : {}),
      ...(opts.notes !== undefined ? { notes: opts.notes } : {}),
    };
    const maxAttempts = this.o.maxAttempts ?? 3;
    let before: number | null = null;
    if (maxAttempts > 1) {
      try {
        before = currentVersionOf(await this.secretVersions(p));
      } catch (err) {
        if (!(err instanceof CofferError) || (err.code !== 'forbidden' && !isRetryable(err))) throw err;
      }
    }
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          return (await this.request(routes.rotateSecret, { params: p, body }, { attempts: 1 })) as SecretMetadata;
        } catch (err) {
          if (!isRetryable(err) || before === null || attempt >= maxAttempts) throw err;
          await sleep(this.backoff(attempt, err));
          let now: number | null;
          try {
            now = currentVersionOf(await this.secretVersions(p));
          } catch {
            throw err;
          }
          if (now === before) continue; // the rotation did not happen: safe to send it again
          if (opts.value !== undefined && now === before + 1) {
            const current = await this.call('getSecret', { params: p }).catch(() => null);
            if (current && current.version === now && current.value === opts.value) return withoutValue(current);
          }
          throw new CofferError(
            'conflict',
            `the rotation of ${where} may or may not have happened: the request failed (${err.message}) and the secret moved from version ${before} to ${now}; check it before rotating again`,
            409,
            err.requestId,
          );
        }
      }
    } finally {
      this.cache?.invalidate(where);
    }
  }

  /** Metadata of the secrets this identity may list, page by page: `for await (const s of client.listSecrets())`. */
  listSecrets(query: Omit<z.input<typeof ListSecretsQuery>, 'cursor'> = {}): Paginator<SecretMetadata> {
    return new Paginator((cursor) => this.call('listSecrets', { query: { ...query, ...(cursor ? { cursor } : {}) } }));
  }

  // ---- bundles --------------------------------------------------------------------------------------------------

  /**
   * Every live secret of one owner that this identity may read: `getBundle('sandbox', 'sbx-42')`. Cached like
   * getSecret. With `deployment`, what that deployment receives of the bundle (what its plan injects, and what was
   * generated for it), recorded on the deployment; never cached.
   */
  async getBundle(
    kind: OwnerPath['kind'] | string,
    owner?: string,
    opts: { deployment?: string; env?: string } = {},
  ): Promise<Bundle> {
    const p = parseOwnerPath(owner === undefined ? kind : `${kind}/${owner}`);
    if (opts.deployment !== undefined || opts.env !== undefined) {
      return this.call('getBundle', {
        params: p,
        query: {
          ...(opts.env !== undefined ? { env: opts.env } : {}),
          ...(opts.deployment !== undefined ? { deployment: opts.deployment } : {}),
        },
      });
    }
    const load = async () => {
      const data = await this.call('getBundle', { params: p });
      const signature = JSON.stringify(Object.entries(data.versions).sort(([a], [b]) => (a < b ? -1 : 1)));
      return { data, signature };
    };
    if (!this.cache) return (await load()).data;
    const b = await this.cache.read(`bundle:${p.kind}/${p.owner}`, `${p.kind}/${p.owner}`, false, load);
    return { values: { ...b.values }, versions: { ...b.versions } };
  }

  /**
   * Sets and deletes several secrets of one owner atomically. A POST: retried only when every set carries an
   * `ifVersion` (so a repeated write cannot apply twice), and a retry that conflicts is checked against the bundle
   * to see whether the first attempt did apply.
   */
  async writeBundle(
    kind: OwnerPath['kind'],
    owner: string,
    body: z.input<typeof BundleWriteRequest>,
  ): Promise<BundleWriteResponse> {
    const p = parseOwnerPath({ kind, owner });
    const sets = Object.entries(body.set ?? {});
    const guarded = sets.every(([, s]) => s.ifVersion !== undefined);
    try {
      return (await this.request(
        routes.writeBundle,
        { params: p, body },
        {
          attempts: guarded ? (this.o.maxAttempts ?? 3) : 1,
          resolve: async (err) => {
            if (err.code !== 'conflict') return undefined;
            const now = await this.call('getBundle', { params: p });
            const versions: Record<string, number | null> = Object.create(null);
            for (const [name, s] of sets) {
              if (now.versions[name] !== (s.ifVersion ?? -2) + 1 || now.values[name] !== s.value) return undefined;
              versions[name] = now.versions[name] ?? null;
            }
            for (const name of body.delete ?? []) {
              if (Object.hasOwn(now.versions, name)) return undefined;
              versions[name] = null;
            }
            return { value: { versions } };
          },
        },
      )) as BundleWriteResponse;
    } finally {
      this.cache?.invalidate(`${p.kind}/${p.owner}`);
    }
  }

  // ---- intake links ---------------------------------------------------------------------------------------------

  /**
   * A one-time link through which a person supplies the value of one secret, checked against `format` (or the
   * secret's own). The URL is shown once: hand it to the person, not through a log. In the client's `environment`
   * unless `env` names another. Not retried (a POST).
   */
  createIntake(
    path: string | SecretPath,
    opts: { prompt: IntakePrompt; expiresIn: number; format?: SecretFormat; env?: string },
  ): Promise<CreateIntakeResponse> {
    const env = opts.env ?? this.o.environment;
    return this.call('createIntake', {
      body: {
        path: formatSecretPath(parseSecretPath(path)),
        prompt: opts.prompt,
        expiresIn: opts.expiresIn,
        ...(opts.format !== undefined ? { format: opts.format } : {}),
        ...(env !== undefined ? { env } : {}),
      },
    });
  }

  /** What a link asks for (its label, help, format and the secret's name). Needs no credentials: the link is one. */
  getIntake(link: string): Promise<IntakeView> {
    return this.call('getIntake', { params: { token: intakeTokenOf(link) } });
  }

  /**
   * Supplies the value a link asks for, once. Needs no credentials. Sent once: after a lost answer a repeat would
   * meet a spent link (410), which could not be told from someone else having used it.
   */
  submitIntake(link: string, value: string): Promise<SubmitIntakeResponse> {
    return this.request(
      routes.submitIntake,
      { params: { token: intakeTokenOf(link) }, body: { value } },
      { attempts: 1 },
    ) as Promise<SubmitIntakeResponse>;
  }

  /** The tenant's links, newest first (tenant admin): metadata only, never a token or a value. */
  listIntakes(query: z.input<typeof ListIntakesQuery> = {}): Promise<IntakeList> {
    return this.call('listIntakes', { query });
  }

  /** Revokes a pending link by its id: its URL answers 410 from then on (tenant admin). */
  revokeIntake(id: string): Promise<IntakeLink> {
    return this.call('revokeIntake', { params: { id } });
  }

  // ---- deployments ----------------------------------------------------------------------------------------------

  /** What a deployment of these bundles to `tier` would do with each secret; changes nothing. */
  planDeployment(
    body: Omit<z.input<typeof PlanDeploymentRequest>, 'environment'> & { environment?: string },
  ): Promise<DeploymentPlan> {
    return this.call('planDeployment', { body: { ...body, environment: this.environmentOf(body.environment) } });
  }

  /**
   * Makes a deployment: its plan, and `generated` (the values made fresh for it, by name), which the server shows
   * this once. Not retried: a lost answer cannot be asked for again, so a repeat would make a second deployment.
   */
  createDeployment(
    body: Omit<z.input<typeof CreateDeploymentRequest>, 'environment'> & { environment?: string },
  ): Promise<CreatedDeployment> {
    return this.call('createDeployment', { body: { ...body, environment: this.environmentOf(body.environment) } });
  }

  /** Deployments, newest first, across pages: by environment (`env`) and by a secret they received (`secret`). */
  listDeployments(query: Omit<z.input<typeof ListDeploymentsQuery>, 'cursor'> = {}): Paginator<DeploymentSummary> {
    return new Paginator((cursor) =>
      this.call('listDeployments', { query: { ...query, ...(cursor ? { cursor } : {}) } }),
    );
  }

  /** A deployment: its plan, and what it received (path@version, when, by whom). */
  getDeployment(id: string): Promise<Deployment> {
    return this.call('getDeployment', { params: { id } });
  }

  /** Rotates what was generated for the deployment, revokes its versions (and leases), and records why. */
  revokeDeployment(id: string, opts: { notes?: string } = {}): Promise<RevokedDeployment> {
    return this.call('revokeDeployment', { params: { id }, body: opts });
  }

  /** Every secret per environment with its class, owning team, contact and rotation cadence, across pages. */
  inventory(query: Omit<z.input<typeof InventoryQuery>, 'cursor'> = {}): Paginator<InventoryItem> {
    return new Paginator((cursor) => this.call('inventory', { query: { ...query, ...(cursor ? { cursor } : {}) } }));
  }

  // ---- consumers and revocation ---------------------------------------------------------------------------------

  /** Who reads a secret, per identity and deployment, within `within` (default 30d): last read, version, bundle or not. */
  consumers(path: string | SecretPath, opts: { within?: string } = {}): Promise<SecretConsumers> {
    return this.call('secretConsumers', {
      params: parseSecretPath(path),
      ...(opts.within !== undefined ? { query: { within: opts.within } } : {}),
    });
  }

  /** The current and previous versions, who still reads the previous one, and whether revoking it is safe. */
  rotationStatus(path: string | SecretPath): Promise<RotationStatus> {
    return this.call('rotationStatus', { params: parseSecretPath(path) });
  }

  /**
   * Stops serving one version (410 from then on). Throws CofferError `consumers_pending` (409), naming them in
   * `details`, while a consumer still reads it within the grace period, unless `force`.
   */
  async revokeVersion(
    path: string | SecretPath,
    version: number,
    opts: { force?: boolean; notes?: string } = {},
  ): Promise<RevokedVersion> {
    const p = parseSecretPath(path);
    try {
      return await this.call('revokeSecretVersion', { params: { ...p, version }, body: opts });
    } finally {
      this.cache?.invalidate(`${p.kind}/${p.owner}/${p.name}`);
    }
  }

  // ---- dynamic credentials --------------------------------------------------------------------------------------

  /**
   * A database role made for this identity by a backend (`read` on `dynamic/<backend>`), with its password: shown
   * once, kept by nobody else. Not retried: a second attempt would make a second role (the first, if it was made,
   * ends with its lease). Renew it before `expiresAt`, revoke it when done.
   */
  async createLease(
    backend: string,
    opts: { ttlSeconds?: number; deployment?: string } = {},
  ): Promise<LeaseCredentials> {
    return (await this.request(
      routes.createLease,
      { params: { name: backend }, body: opts },
      { attempts: 1 },
    )) as LeaseCredentials;
  }

  /**
   * A later end for a lease (`ttlSeconds` from now, default the backend's), never past its `maxExpiresAt`. Safe to
   * repeat, so it is retried like a PUT.
   */
  async renewLease(leaseId: string, opts: { ttlSeconds?: number } = {}): Promise<Lease> {
    return (await this.request(
      routes.renewLease,
      { params: { id: leaseId }, body: opts },
      { attempts: this.o.maxAttempts ?? 3 },
    )) as Lease;
  }

  /** Ends a lease now. The answer's `state` is `revoked`, or `revoking` while the database is unreachable. */
  async revokeLease(leaseId: string): Promise<Lease> {
    return (await this.request(routes.revokeLease, { params: { id: leaseId } })) as Lease;
  }

  getLease(leaseId: string): Promise<Lease> {
    return this.call('getLease', { params: { id: leaseId } });
  }

  /** The lease inventory (admins, auditors), oldest first, across pages. */
  listLeases(query: Omit<z.input<typeof LeaseListQuery>, 'cursor'> = {}): Paginator<Lease> {
    return new Paginator((cursor) => this.call('listLeases', { query: { ...query, ...(cursor ? { cursor } : {}) } }));
  }

  // ---- audit ----------------------------------------------------------------------------------------------------

  /** Audit events, newest first, across pages. */
  queryAudit(query: Omit<z.input<typeof AuditQuery>, 'cursor'> = {}): Paginator<AuditEventView> {
    return new Paginator((cursor) => this.call('queryAudit', { query: { ...query, ...(cursor ? { cursor } : {}) } }));
  }

  verifyAudit(query: { from?: string; to?: string } = {}): Promise<AuditVerifyResult> {
    return this.call('verifyAudit', { query });
  }

  /** Streams the audit export (oldest first) without holding it in memory. */
  async exportAudit(query: z.input<typeof AuditExportQuery> = {}): Promise<AuditExport> {
    const res = (await this.request(routes.exportAudit, { query }, { stream: true })) as Response;
    if (!res.body) throw new CofferError('invalid_response', 'the export has no body', res.status, null);
    return new AuditExport(res.body, res.headers.get('content-type') ?? '');
  }

  /**
   * New audit events as they commit (server-sent events), oldest first, across sessions: when the server ends one
   * (after `maxSeconds`, or when the token expires) or the connection drops, it reconnects after the last event
   * seen, with a fresh token. Ends when `signal` aborts. The server audits each session once, not each event.
   */
  async *followAudit(
    query: z.input<typeof AuditFollowQuery> = {},
    opts: { signal?: AbortSignal } = {},
  ): AsyncGenerator<AuditEventView> {
    let lastId = query.after !== undefined ? String(query.after) : undefined;
    let failures = 0;
    while (!opts.signal?.aborted) {
      try {
        const res = (await this.request(
          routes.followAudit,
          { query },
          { stream: true, attempts: 1, signal: opts.signal, headers: lastId ? { 'last-event-id': lastId } : {} },
        )) as Response;
        if (!res.body) throw new CofferError('invalid_response', 'the stream has no body', res.status, null);
        failures = 0;
        yield* auditEventsOf(res.body, (id) => {
          lastId = id;
        });
      } catch (err) {
        if (opts.signal?.aborted) return;
        // A dropped stream surfaces as a plain read error; a refusal (forbidden, unauthorized) is final.
        const retryable = !(err instanceof CofferError) || isRetryable(err);
        if (!retryable || ++failures >= (this.o.maxAttempts ?? 3) + 2) throw err;
        await sleep(
          this.backoff(failures, err instanceof CofferError ? err : new CofferError('network_error', '', 0, null)),
        );
      }
    }
  }

  // ---- cache ----------------------------------------------------------------------------------------------------

  /**
   * Drops cached values of a secret (`kind/owner/name`, and its owner's bundle) or of a bundle (`kind/owner`), so
   * the next read fetches them. Call it from a `secret.rotated` webhook handler with the delivery's `path`.
   */
  invalidate(path: string): void {
    this.cache?.invalidate(path);
  }

  /** Polls the server for every cached value now (what the `refreshMs` timer does). */
  refreshCache(): Promise<void> {
    return this.cache?.refresh() ?? Promise.resolve();
  }

  /** Stops the cache's timer and forgets its values. */
  close(): void {
    this.cache?.close();
  }

  // ---- transport ------------------------------------------------------------------------------------------------

  /** The current token, logging in (once, shared by concurrent callers) when there is none or it is about to expire. */
  async accessToken(): Promise<string> {
    if (this.token) {
      const margin = Math.min(RENEW_MARGIN_MS, this.token.lifetimeMs / 2);
      if (this.token.expiresAt - margin > this.now()) return this.token.value;
    }
    if (!this.canLogin()) {
      if (this.token && this.token.expiresAt > this.now()) return this.token.value;
      throw new CofferError(
        'unauthorized',
        this.token
          ? 'the access token has expired and no client credentials are configured'
          : 'no token and no client credentials configured',
        401,
        null,
      );
    }
    this.login ??= this.issueToken().finally(() => {
      this.login = null;
    });
    const current = this.token;
    // A renewal that fails early (the platform has not rotated its token yet, so the old one would be a replay) is
    // not an outage while the current token still holds.
    if (current && current.expiresAt > this.now()) return this.login.catch(() => current.value);
    return this.login;
  }

  /** A call's environment: its own, else the client's, else the tenant's default. */
  private environmentOf(env: string | undefined): string {
    return env ?? this.o.environment ?? DEFAULT_ENVIRONMENT;
  }

  private canLogin(): boolean {
    return Boolean((this.o.clientId && this.o.clientSecret) || this.o.federation || this.o.renewToken);
  }

  private async issueToken(): Promise<string> {
    if (this.o.renewToken) {
      const renewed = await this.o.renewToken();
      const lifetimeMs = Math.max(1000, renewed.expiresAt - this.now());
      this.token = { value: renewed.accessToken, expiresAt: renewed.expiresAt, lifetimeMs };
      return renewed.accessToken;
    }
    const f = this.o.federation;
    const body = f
      ? { identity: f.identity, subjectToken: (await f.subjectToken()).trim() }
      : { clientId: this.o.clientId, clientSecret: this.o.clientSecret };
    const res = await this.send(
      new URL(`${this.baseUrl}${routes.issueToken.path}`),
      'POST',
      this.headers({ 'content-type': 'application/json', accept: 'application/json' }),
      body,
      false,
    );
    const parsed = TokenResponse.parse(await this.parse(routes.issueToken, res));
    const lifetimeMs = parsed.expiresIn * 1000;
    this.token = { value: parsed.accessToken, expiresAt: this.now() + lifetimeMs, lifetimeMs };
    this.o.onToken?.({ accessToken: parsed.accessToken, expiresAt: this.token.expiresAt });
    return parsed.accessToken;
  }

  private async request(def: RouteDef, input: RequestInput, opts: RequestOptions = {}): Promise<unknown> {
    const url = new URL(this.baseUrl + buildPath(def.path, input.params));
    for (const [k, v] of Object.entries(input.query ?? {})) {
      if (v !== undefined && v !== null) url.searchParams.set(k, String(v));
    }
    if (this.o.environment !== undefined && takesEnvironment(def) && !url.searchParams.has('env')) {
      url.searchParams.set('env', this.o.environment);
    }
    const attempts = opts.attempts ?? (IDEMPOTENT.has(def.method) ? (this.o.maxAttempts ?? 3) : 1);
    let reauthenticated = false;
    /** An earlier attempt reached the wire and its answer was lost: it may have been applied. */
    let ambiguous = false;
    for (let attempt = 1; ; attempt++) {
      let sent = false;
      try {
        const headers = this.headers({
          accept: def.produces ? def.produces.join(', ') : 'application/json',
          ...opts.headers,
        });
        if (def.action) headers.authorization = `Bearer ${await this.accessToken()}`;
        if (input.body !== undefined) headers['content-type'] = 'application/json';
        sent = true;
        const res = await this.send(url, def.method, headers, input.body, opts.stream === true, opts.signal);
        if (res.status === 401 && def.action && !reauthenticated && this.canLogin()) {
          // The token was revoked or expired early: log in once more and try again.
          await res.body?.cancel();
          reauthenticated = true;
          this.token = null;
          attempt--;
          continue;
        }
        if (opts.stream && res.ok) return res;
        return await this.parse(def, res);
      } catch (err) {
        if (ambiguous && opts.resolve && err instanceof CofferError) {
          const resolved = await opts.resolve(err).catch(() => undefined);
          if (resolved) return resolved.value;
        }
        if (!isRetryable(err) || attempt >= attempts) throw err;
        if (sent && err.code === 'network_error') ambiguous = true;
        await sleep(this.backoff(attempt, err));
      }
    }
  }

  private backoff(attempt: number, err: CofferError): number {
    const base = Math.min(MAX_BACKOFF_MS, (this.o.backoffMs ?? 100) * 2 ** (attempt - 1));
    const hinted = err.retryAfterSeconds !== null ? Math.min(err.retryAfterSeconds * 1000, MAX_BACKOFF_MS) : 0;
    return Math.max(hinted, Math.random() * base);
  }

  private headers(h: Record<string, string>): Record<string, string> {
    if (this.o.userAgent) h['user-agent'] = this.o.userAgent;
    if (this.o.requestIdPrefix) h['x-request-id'] = `${this.o.requestIdPrefix}${++this.requestCounter}`;
    return h;
  }

  private async send(
    url: URL,
    method: string,
    headers: Record<string, string>,
    body: unknown,
    stream: boolean,
    signal?: AbortSignal,
  ): Promise<Response> {
    const timeoutMs = this.o.timeoutMs ?? 10_000;
    const controller = new AbortController();
    signal?.addEventListener('abort', () => controller.abort(signal.reason), { once: true });
    const timer = setTimeout(() => controller.abort(new Error(`no response within ${timeoutMs} ms`)), timeoutMs);
    try {
      const res = await this.fetchImpl(url, {
        method,
        headers,
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: controller.signal,
      });
      // A stream may take as long as it takes once it has started; anything else must also finish its body in time.
      if (stream) clearTimeout(timer);
      else {
        const text = await res.text();
        clearTimeout(timer);
        return new Response(res.status === 204 || res.status === 304 ? null : text, {
          status: res.status,
          headers: res.headers,
        });
      }
      return res;
    } catch (err) {
      clearTimeout(timer);
      const reason = err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : 'failed';
      throw new CofferError('network_error', `cannot reach Coffer at ${this.baseUrl}: ${reason}`, 0, null);
    }
  }

  private async parse(def: RouteDef, res: Response): Promise<unknown> {
    const requestId = res.headers.get('x-request-id');
    const text = await res.text();
    if (res.ok) {
      const schema = def.success[res.status];
      if (schema === null) return undefined;
      if (!schema) throw new CofferError('invalid_response', `unexpected status ${res.status}`, res.status, requestId);
      try {
        return schema.parse(def.produces ? text : JSON.parse(text));
      } catch {
        throw new CofferError('invalid_response', 'the response does not match the contract', res.status, requestId);
      }
    }
    throw errorFromResponse(res.status, res.headers, text);
  }
}

/** An intake link's token, from the token itself or the whole URL (`…/v1/intake/<token>`, query or fragment dropped). */
export function intakeTokenOf(link: string): string {
  const at = link.lastIndexOf('/intake/');
  const token = (at >= 0 ? link.slice(at + '/intake/'.length) : link).split(/[?#]/)[0] ?? '';
  if (!/^[A-Za-z0-9_-]{1,128}$/.test(token)) {
    throw new CofferError(
      'validation_failed',
      'not an intake link: expected …/v1/intake/<token> or the token',
      0,
      null,
    );
  }
  return token;
}

/** Whether a route takes `?env` (every secret, bundle, list, rotation and audit route does). */
function takesEnvironment(def: RouteDef): boolean {
  const q = def.query as { shape?: Record<string, unknown> } | undefined;
  return q?.shape !== undefined && Object.hasOwn(q.shape, 'env');
}
