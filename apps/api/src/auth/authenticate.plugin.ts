import type { Action } from '@coffer/contracts';
import fastifyJwt, { type TokenOrHeader } from '@fastify/jwt';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { attemptedResource, requestEvent } from '../audit/audit.events.ts';
import type { AuditBatcher } from '../audit/audit.writer.ts';
import { AppError, audited, forbidden, unauthorized } from '../errors/app-error.ts';
import { mayAttempt } from './authorize.ts';
import type { Principal } from './principal.ts';
import type { PrincipalResolver } from './principals.ts';
import type { SigningKeys } from './signing-keys.ts';
import { TokenClaims } from './token-claims.ts';
import { UnauthenticatedGuard } from './unauthenticated-guard.ts';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
  interface FastifyInstance {
    /** onRequest hook for every route that declares an action: verify the token, load the identity, check the role. */
    authenticate: (request: FastifyRequest) => Promise<void>;
  }
  interface FastifyContextConfig {
    routeName?: string;
    action?: Action | null;
  }
}

export interface AuthenticateOptions {
  keys: SigningKeys;
  issuer: string;
  audience: string;
  principals: Pick<PrincipalResolver, 'resolve'>;
  audit: Pick<AuditBatcher, 'record'>;
  /** Failed authentications per source address per minute before the source is refused without verification. */
  failuresPerMinute: number;
  onAuditError: (err: unknown) => void;
}

/** Headers that would let a token name its own verification key; we never honour them, and refuse tokens that try. */
const FORBIDDEN_HEADERS = ['jwk', 'jku', 'x5u', 'x5c', 'crit'];
const BEARER = /^Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)$/;
const CLOCK_TOLERANCE_MS = 5_000;

/**
 * The claims of tokens whose signature and claims were checked, by the token's exact text, until the token expires.
 * A service presents the same token for its whole life, and checking it again (decoding, the signature cache's hash
 * of the token, the claims schema) was a measurable part of a read. Only the token's own checks are remembered: the
 * identity, its revision, its session and its credential version are checked on every request as before. The
 * verifying keys are fixed at start, so a remembered token cannot outlive the key that signed it.
 */
export class VerifiedTokens {
  private readonly entries = new Map<string, { claims: Readonly<TokenClaims>; untilMs: number }>();

  constructor(private readonly maxEntries = 10_000) {}

  get(token: string, nowMs = Date.now()): Readonly<TokenClaims> | undefined {
    const e = this.entries.get(token);
    if (!e) return undefined;
    if (nowMs >= e.untilMs) {
      this.entries.delete(token);
      return undefined;
    }
    return e.claims;
  }

  set(token: string, claims: TokenClaims): Readonly<TokenClaims> {
    const frozen = Object.freeze({ ...claims, ...(claims.clm ? { clm: Object.freeze({ ...claims.clm }) } : {}) });
    // The verifier accepted it up to exp plus the tolerance; never longer than that.
    this.entries.set(token, { claims: frozen, untilMs: claims.exp * 1000 + CLOCK_TOLERANCE_MS });
    if (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
    return frozen;
  }
}

async function authenticatePlugin(app: FastifyInstance, o: AuthenticateOptions): Promise<void> {
  await app.register(fastifyJwt, {
    secret: {
      private: o.keys.privatePem,
      // Picks the verifying key by `kid`; anything but a plain EdDSA header with a key id we issued is refused.
      public: (_request: FastifyRequest, token: TokenOrHeader) => {
        const header: Record<string, unknown> = 'header' in token ? token.header : {};
        if (header.alg !== 'EdDSA' || typeof header.kid !== 'string' || FORBIDDEN_HEADERS.some((h) => h in header)) {
          return Promise.reject(new AppError('unauthorized', 'invalid token'));
        }
        const pem = o.keys.publicPemFor(header.kid);
        return pem ? Promise.resolve(pem) : Promise.reject(new AppError('unauthorized', 'invalid token'));
      },
    },
    decode: { complete: true },
    sign: { algorithm: 'EdDSA', iss: o.issuer, aud: o.audience, kid: o.keys.kid },
    verify: {
      algorithms: ['EdDSA'],
      allowedIss: o.issuer,
      allowedAud: o.audience,
      requiredClaims: ['iss', 'aud', 'exp', 'iat', 'sub', 'jti'],
      clockTolerance: CLOCK_TOLERANCE_MS,
    },
  });

  app.decorateRequest('principal', null);
  const verified = new VerifiedTokens();

  const guard = new UnauthenticatedGuard({
    failuresPerWindow: o.failuresPerMinute,
    windowMs: 60_000,
    record: (e) => o.audit.record(e),
    onError: o.onAuditError,
  });
  // preClose, so the counted refusals are handed to the audit writer before it drains on close.
  app.addHook('preClose', () => guard.close());

  async function deny(
    request: FastifyRequest,
    action: Action,
    err: AppError,
    claimed?: { tenantId: string; actorId: string },
  ): Promise<never> {
    const event = requestEvent(request, {
      action,
      outcome: 'denied',
      errorCode: err.code,
      resource: attemptedResource(request),
      ...claimed,
    });
    if (err.code === 'unauthorized' || err.code === 'rate_limited') {
      if (err.code === 'unauthorized') guard.recordFailure(request.ip);
      await guard.refusal(event, request.routeOptions.config.routeName ?? request.routeOptions.url ?? '', err.message);
    } else {
      await o.audit.record(event);
    }
    throw audited(err);
  }

  app.decorate('authenticate', async (request: FastifyRequest): Promise<void> => {
    const action = request.routeOptions.config.action;
    if (!action) throw new Error(`route ${request.routeOptions.url} has no action`);
    const wait = guard.retryAfterSeconds(request.ip);
    if (wait > 0) {
      return deny(
        request,
        action,
        new AppError(
          'rate_limited',
          'too many failed authentications from this address; wait before trying again',
          undefined,
          wait,
        ),
      );
    }
    const header = request.headers.authorization;
    if (!header) return deny(request, action, unauthorized('a bearer token is required'));
    if (!BEARER.test(header))
      return deny(request, action, unauthorized('the authorization header must be "Bearer <token>"'));

    const token = header.slice('Bearer '.length);
    let claims = verified.get(token);
    if (!claims) {
      try {
        const parsed = TokenClaims.safeParse(await request.jwtVerify());
        if (!parsed.success) return deny(request, action, unauthorized('invalid token'));
        claims = verified.set(token, parsed.data);
      } catch (err) {
        const expired = (err as { code?: string }).code === 'FST_JWT_AUTHORIZATION_TOKEN_EXPIRED';
        return deny(request, action, unauthorized(expired ? 'the token has expired' : 'invalid token'));
      }
    }

    // Only where the route's SQL re-checks the identity's revision (its entry in the contracts says so).
    let principal: Principal | null;
    try {
      principal = await o.principals.resolve(claims, request.routeOptions.config.identityRecheckedInSql === true);
    } catch (err) {
      if (!(err instanceof AppError) || err.code !== 'integrity_error') throw err;
      // An identity row edited outside the API: audited in the tenant the token names, as an error, not a denial.
      await o.audit.record(
        requestEvent(request, {
          action,
          outcome: 'error',
          errorCode: err.code,
          resource: attemptedResource(request),
          tenantId: claims.tid,
          actorId: claims.sub,
        }),
      );
      throw audited(err);
    }
    if (!principal) {
      return deny(request, action, unauthorized('the token is no longer valid: log in again'), {
        tenantId: claims.tid,
        actorId: claims.sub,
      });
    }
    request.principal = principal;
    if (!mayAttempt(principal, action)) {
      return deny(request, action, forbidden(`role ${principal.role} may not perform ${action}`));
    }
  });
}

export const authenticate = fp(authenticatePlugin, { name: 'coffer-authenticate', fastify: '5.x' });
