import {
  buildPath,
  ErrorEnvelope,
  type RouteDef,
  type RouteInput,
  type RouteName,
  type RouteOutput,
  type Routes,
  routes,
  TokenResponse,
} from '@coffer/contracts';
import { CofferError } from './errors.ts';

export interface CofferClientOptions {
  /** e.g. https://coffer.internal:7400 */
  baseUrl: string;
  /** Client credentials: the SDK logs in, caches the token and renews it before it expires. */
  clientId?: string;
  clientSecret?: string;
  /** Or a ready-made access token (it is used as-is and never renewed). */
  token?: string;
  /** Attempts for requests that are safe to repeat (GET, PUT, DELETE) on 503, 429 and network errors. Default 3. */
  maxAttempts?: number;
  /** Per-request timeout in ms. Default 10 000. */
  timeoutMs?: number;
  /** Base backoff in ms (doubled each attempt, with full jitter). Default 100. */
  backoffMs?: number;
  fetch?: typeof fetch;
  userAgent?: string;
}

const IDEMPOTENT = new Set(['GET', 'PUT', 'DELETE']);
/** Renew this long before the token expires, so a request never leaves with a token about to lapse. */
const RENEW_MARGIN_MS = 30_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A typed client over the contracts' route table: `call(name, input)` exists for every route, with the input
 * and output types of that route, and every response is parsed with the route's own schema.
 */
export class CofferClient {
  private token: { value: string; expiresAt: number } | null = null;
  private login: Promise<string> | null = null;
  private readonly fetchImpl: typeof fetch;
  private readonly baseUrl: string;

  constructor(private readonly o: CofferClientOptions) {
    this.fetchImpl = o.fetch ?? globalThis.fetch;
    this.baseUrl = o.baseUrl.replace(/\/+$/, '');
    if (o.token) this.token = { value: o.token, expiresAt: Number.POSITIVE_INFINITY };
  }

  /** Calls one route of the contracts. Throws CofferError on any non-2xx answer. */
  async call<N extends RouteName>(
    name: N,
    ...args: object extends RouteInput<Routes[N]> ? [input?: RouteInput<Routes[N]>] : [input: RouteInput<Routes[N]>]
  ): Promise<RouteOutput<Routes[N]>> {
    const def: RouteDef = routes[name];
    const input = (args[0] ?? {}) as {
      params?: Record<string, string | number>;
      query?: Record<string, unknown>;
      body?: unknown;
    };
    const url = new URL(this.baseUrl + buildPath(def.path, input.params));
    for (const [k, v] of Object.entries(input.query ?? {})) {
      if (v !== undefined && v !== null) url.searchParams.set(k, String(v));
    }
    const attempts = IDEMPOTENT.has(def.method) ? (this.o.maxAttempts ?? 3) : 1;
    let reauthenticated = false;
    for (let attempt = 1; ; attempt++) {
      try {
        const headers: Record<string, string> = { accept: 'application/json' };
        if (this.o.userAgent) headers['user-agent'] = this.o.userAgent;
        if (def.action) headers.authorization = `Bearer ${await this.accessToken()}`;
        if (input.body !== undefined) headers['content-type'] = 'application/json';
        const res = await this.send(url, def.method, headers, input.body);
        if (res.status === 401 && def.action && !reauthenticated && this.canLogin()) {
          // The token was revoked or expired early: log in once more and try again.
          reauthenticated = true;
          this.token = null;
          attempt--;
          continue;
        }
        return await this.parse(def, res);
      } catch (err) {
        const retryable =
          err instanceof CofferError && (err.code === 'network_error' || err.status === 503 || err.status === 429);
        if (!retryable || attempt >= attempts) throw err;
        const base = (this.o.backoffMs ?? 100) * 2 ** (attempt - 1);
        const hinted = err.retryAfterSeconds !== null ? err.retryAfterSeconds * 1000 : 0;
        await sleep(Math.max(hinted, Math.random() * base));
      }
    }
  }

  /** The current token, logging in (once, shared by concurrent callers) when there is none or it is about to expire. */
  async accessToken(): Promise<string> {
    if (this.token && this.token.expiresAt - RENEW_MARGIN_MS > Date.now()) return this.token.value;
    if (!this.canLogin()) {
      if (this.token) return this.token.value;
      throw new CofferError('unauthorized', 'no token and no client credentials configured', 401, null);
    }
    this.login ??= this.issueToken().finally(() => {
      this.login = null;
    });
    return this.login;
  }

  private canLogin(): boolean {
    return Boolean(this.o.clientId && this.o.clientSecret);
  }

  private async issueToken(): Promise<string> {
    const res = await this.send(
      new URL(`${this.baseUrl}${routes.issueToken.path}`),
      'POST',
      { 'content-type': 'application/json', accept: 'application/json' },
      {
        clientId: this.o.clientId,
        clientSecret: this.o.clientSecret,
      },
    );
    const body = (await this.parse(routes.issueToken, res)) as TokenResponse;
    const parsed = TokenResponse.parse(body);
    this.token = { value: parsed.accessToken, expiresAt: Date.now() + parsed.expiresIn * 1000 };
    return parsed.accessToken;
  }

  private async send(url: URL, method: string, headers: Record<string, string>, body: unknown): Promise<Response> {
    try {
      return await this.fetchImpl(url, {
        method,
        headers,
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(this.o.timeoutMs ?? 10_000),
      });
    } catch (err) {
      const reason = err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : 'failed';
      throw new CofferError('network_error', `cannot reach Coffer at ${this.baseUrl}: ${reason}`, 0, null);
    }
  }

  private async parse(def: RouteDef, res: Response): Promise<never> {
    const requestId = res.headers.get('x-request-id');
    const text = await res.text();
    if (res.ok) {
      const schema = def.success[res.status];
      if (schema === null) return undefined as never;
      if (!schema) throw new CofferError('invalid_response', `unexpected status ${res.status}`, res.status, requestId);
      try {
        return schema.parse(JSON.parse(text)) as never;
      } catch {
        throw new CofferError('invalid_response', 'the response does not match the contract', res.status, requestId);
      }
    }
    const retryAfter = Number(res.headers.get('retry-after'));
    let envelope: ReturnType<typeof ErrorEnvelope.parse> | undefined;
    try {
      envelope = ErrorEnvelope.parse(JSON.parse(text));
    } catch {
      // not an envelope (a proxy's page, say)
    }
    throw new CofferError(
      envelope?.error.code ?? (res.status === 503 ? 'unavailable' : 'invalid_response'),
      envelope?.error.message ?? `HTTP ${res.status}`,
      res.status,
      envelope?.error.requestId ?? requestId,
      envelope?.error.details ?? [],
      Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : null,
    );
  }
}
