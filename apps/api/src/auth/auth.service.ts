import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { PLATFORM_TENANT_ID, type SessionRequest, type TokenResponse, type WhoAmI } from '@coffer/contracts';
import { auditEvent } from '../audit/audit.events.ts';
import type { AuditSink } from '../audit/audit.sink.ts';
import { decoyHash, verifyClientSecret } from '../crypto/client-secret-hash.ts';
import { rowIntegrityError } from '../crypto/row-macs.ts';
import { AppError, audited, unauthorized } from '../errors/app-error.ts';
import type { RequestContext } from '../http/request-context.ts';
import type { IdentityQueries } from '../identities/identities.queries.ts';
import type { SessionService } from '../sessions/sessions.service.ts';
import { claimText, templatedClaims } from '../trust/claims.ts';
import { FederationRefused, type TrustService } from '../trust/trust.service.ts';
import type { LoginThrottle } from './login-throttle.ts';
import type { Principal } from './principal.ts';

export interface AuthServiceDeps {
  identities: Pick<IdentityQueries, 'forLogin'>;
  sign: (claims: Record<string, unknown>, ttlSeconds: number) => string;
  audit: Pick<AuditSink, 'record'>;
  defaultTtlSeconds: number;
  throttle: LoginThrottle;
  /**
   * Keyed fingerprint for a client id that matches no identity: a caller who swaps the two fields would otherwise
   * write a live client secret into the permanent audit log.
   */
  fingerprint: (value: string) => string;
  federation: Pick<TrustService, 'exchange'>;
  /** Opens a person's session when the login asks for one. */
  sessions: Pick<SessionService, 'open'>;
}

const LOGIN_FAILED = 'unknown client id or wrong client secret';
const FEDERATION_FAILED = 'the subject token is not accepted for this identity';

/** Token login: client credentials in, a short-lived signed token out. */
export function authService(deps: AuthServiceDeps) {
  /** Every login attempt's one audit event: the identity when the client id names one, else a keyed fingerprint. */
  const recordLogin = (
    ctx: RequestContext,
    identity: { id: string; tenantId: string; name: string } | undefined,
    clientId: string,
    ok: boolean,
    details: Record<string, string>,
  ) =>
    deps.audit.record(
      auditEvent(ctx, {
        action: 'auth.token',
        outcome: ok ? 'allowed' : 'denied',
        tenantId: identity?.tenantId ?? PLATFORM_TENANT_ID,
        actorId: identity?.id ?? null,
        actorName: identity?.name ?? null,
        resource: `identities/${identity?.id ?? 'unknown'}`,
        errorCode: ok ? null : 'unauthorized',
        details: {
          ...(identity ? { clientId } : { clientIdFingerprint: deps.fingerprint(clientId) }),
          ...details,
        },
      }),
    );

  /** An identity row edited outside the API logs in by no method: integrity_error, audited as an error. */
  const refuseTampered = async (
    ctx: RequestContext,
    identity: { id: string; tenantId: string; name: string },
    clientId: string,
    details: Record<string, string>,
  ): Promise<never> => {
    await deps.audit.record(
      auditEvent(ctx, {
        action: 'auth.token',
        outcome: 'error',
        tenantId: identity.tenantId,
        actorId: identity.id,
        actorName: identity.name,
        resource: `identities/${identity.id}`,
        errorCode: 'integrity_error',
        details: { clientId, ...details, reason: 'integrity' },
      }),
    );
    throw audited(rowIntegrityError());
  };

  return {
    /**
     * A wrong secret, an unknown client id and a disabled identity all answer the same 401 after the same scrypt
     * work, so the response says nothing about which client ids exist. Every attempt is audited.
     */
    async issueToken(
      ctx: RequestContext,
      clientId: string,
      clientSecret: string,
      session?: SessionRequest,
    ): Promise<TokenResponse> {
      const retryAfter = deps.throttle.retryAfterSeconds(clientId, ctx.sourceIp);
      if (retryAfter > 0) {
        await deps.audit.record(
          auditEvent(ctx, {
            action: 'auth.token',
            outcome: 'denied',
            errorCode: 'rate_limited',
            resource: 'identities/unknown',
            details: { clientIdFingerprint: deps.fingerprint(clientId), reason: 'too_many_failures' },
          }),
        );
        throw audited(
          new AppError(
            'rate_limited',
            'too many failed logins for this client id from this address; wait before trying again',
            undefined,
            retryAfter,
          ),
        );
      }
      const pause = deps.throttle.slowDownMs(clientId);
      if (pause > 0) await sleep(pause);
      const identity = await deps.identities.forLogin(clientId);
      const secretOk = await verifyClientSecret(clientSecret, identity?.secretHash ?? (await decoyHash()));
      // Its role, policies or secret hash were changed outside the API (a copied hash would log in otherwise).
      if (identity && !identity.intact) await refuseTampered(ctx, identity, clientId, {});
      const ok = identity !== undefined && secretOk && !identity.disabled;
      const reason = !identity ? 'unknown_client' : !secretOk ? 'wrong_secret' : identity.disabled ? 'disabled' : null;
      if (!ok || !identity) {
        await recordLogin(ctx, identity, clientId, false, reason ? { reason } : {});
        deps.throttle.recordFailure(clientId, ctx.sourceIp);
        throw audited(unauthorized(LOGIN_FAILED));
      }
      deps.throttle.recordSuccess(clientId, ctx.sourceIp);
      if (session) {
        // The session row first: should the audit write then fail, the request fails and the row is unusable
        // (its refresh credential was never sent).
        const opened = await deps.sessions.open(ctx, identity, session, 'client_secret', undefined);
        await recordLogin(ctx, identity, clientId, true, { session: opened.session.id });
        return {
          accessToken: opened.accessToken,
          tokenType: 'Bearer',
          expiresIn: opened.expiresIn,
          session: opened.session,
        };
      }
      await recordLogin(ctx, identity, clientId, true, {});
      const ttl = identity.tokenTtlSeconds ?? deps.defaultTtlSeconds;
      const accessToken = deps.sign(
        {
          sub: identity.id,
          tid: identity.tenantId,
          role: identity.role,
          cv: identity.credentialVersion,
          jti: randomUUID(),
        },
        ttl,
      );
      return { accessToken, tokenType: 'Bearer', expiresIn: ttl };
    },

    /**
     * Workload identity federation: a token the workload's platform signed, for an identity bound to its claims.
     * Every refusal answers the same 401; the audit event names the precise reason, the issuer, the subject and the
     * claims that matched, never the token.
     */
    async exchangeToken(
      ctx: RequestContext,
      clientId: string,
      subjectToken: string,
      session?: SessionRequest,
    ): Promise<TokenResponse> {
      const identity = await deps.identities.forLogin(clientId);
      // Bindings rewritten outside the API (another issuer or subject) must not let another workload in.
      if (identity && !identity.intact) await refuseTampered(ctx, identity, clientId, { method: 'federation' });
      let refusal: FederationRefused | undefined;
      let login: Awaited<ReturnType<TrustService['exchange']>> | undefined;
      if (!identity) refusal = new FederationRefused('unknown_identity');
      else {
        try {
          login = await deps.federation.exchange(identity, subjectToken);
        } catch (err) {
          // A trusted issuer edited outside the API (its keys, URL, audiences): refused like a tampered identity.
          if (err instanceof AppError && err.code === 'integrity_error') {
            await refuseTampered(ctx, identity, clientId, { method: 'federation', row: 'issuer' });
          }
          if (!(err instanceof FederationRefused)) throw err;
          refusal = err;
        }
      }
      const issuer = login?.issuer ?? refusal?.issuer;
      const subject = login?.subject ?? refusal?.subject;
      const clm: Record<string, string> = {};
      if (login) {
        for (const name of templatedClaims(login.policies)) {
          const value = claimText(login.payload, name);
          if (value !== undefined) clm[name] = value.slice(0, 512);
        }
      }
      const opened =
        login && identity && session ? await deps.sessions.open(ctx, identity, session, 'federation', clm) : undefined;
      await recordLogin(ctx, identity, clientId, login !== undefined, {
        ...(opened ? { session: opened.session.id } : {}),
        method: 'federation',
        ...(issuer ? { issuer: issuer.name } : {}),
        ...(subject !== undefined ? { subject: subject.slice(0, 256) } : {}),
        ...Object.fromEntries(Object.entries(login?.matched ?? {}).map(([k, v]) => [`claim.${k}`, v.slice(0, 256)])),
        ...(refusal ? { reason: refusal.reason } : {}),
      });
      if (!login || !identity) throw audited(unauthorized(FEDERATION_FAILED));
      if (opened) {
        return {
          accessToken: opened.accessToken,
          tokenType: 'Bearer',
          expiresIn: opened.expiresIn,
          session: opened.session,
        };
      }
      const ttl = Math.min(
        identity.tokenTtlSeconds ?? deps.defaultTtlSeconds,
        // A Coffer token never outlives the platform token it was exchanged for by much: its workload can renew.
        Math.max(60, (login.payload.exp as number) - Math.floor(Date.now() / 1000)),
      );
      const accessToken = deps.sign(
        {
          sub: identity.id,
          tid: identity.tenantId,
          role: identity.role,
          cv: identity.credentialVersion,
          jti: randomUUID(),
          ...(Object.keys(clm).length > 0 ? { clm } : {}),
        },
        ttl,
      );
      return { accessToken, tokenType: 'Bearer', expiresIn: ttl };
    },

    whoami(p: Principal): WhoAmI {
      return {
        identityId: p.identityId,
        clientId: p.clientId,
        name: p.name,
        tenantId: p.tenantId,
        role: p.role,
        policies: p.policies.map((x) => ({ ...x })),
        tokenExpiresAt: p.tokenExpiresAt.toISOString(),
      };
    },
  };
}

export type AuthService = ReturnType<typeof authService>;
