import { randomUUID } from 'node:crypto';
import { PLATFORM_TENANT_ID, type TokenResponse, type WhoAmI } from '@coffer/contracts';
import { auditEvent } from '../audit/audit.events.ts';
import type { AuditSink } from '../audit/audit.sink.ts';
import { decoyHash, verifyClientSecret } from '../crypto/client-secret-hash.ts';
import { rowIntegrityError } from '../crypto/row-macs.ts';
import { AppError, audited, unauthorized } from '../errors/app-error.ts';
import type { RequestContext } from '../http/request-context.ts';
import type { IdentityQueries } from '../identities/identities.queries.ts';
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
}

const LOGIN_FAILED = 'unknown client id or wrong client secret';

/** Token login: client credentials in, a short-lived signed token out. */
export function authService(deps: AuthServiceDeps) {
  return {
    /**
     * A wrong secret, an unknown client id and a disabled identity all answer the same 401 after the same scrypt
     * work, so the response says nothing about which client ids exist. Every attempt is audited.
     */
    async issueToken(ctx: RequestContext, clientId: string, clientSecret: string): Promise<TokenResponse> {
      const retryAfter = deps.throttle.retryAfterSeconds(clientId);
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
            'too many failed logins for this client id; wait before trying again',
            undefined,
            retryAfter,
          ),
        );
      }
      const identity = await deps.identities.forLogin(clientId);
      const secretOk = await verifyClientSecret(clientSecret, identity?.secretHash ?? (await decoyHash()));
      if (identity && !identity.intact) {
        // Its role, policies or secret hash were changed outside the API (a copied hash would log in otherwise).
        await deps.audit.record(
          auditEvent(ctx, {
            action: 'auth.token',
            outcome: 'error',
            tenantId: identity.tenantId,
            actorId: identity.id,
            actorName: identity.name,
            resource: `identities/${identity.id}`,
            errorCode: 'integrity_error',
            details: { clientId, reason: 'integrity' },
          }),
        );
        throw audited(rowIntegrityError());
      }
      const ok = identity !== undefined && secretOk && !identity.disabled;
      const reason = !identity ? 'unknown_client' : !secretOk ? 'wrong_secret' : identity.disabled ? 'disabled' : null;
      await deps.audit.record(
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
            ...(reason ? { reason } : {}),
          },
        }),
      );
      if (!ok || !identity) {
        deps.throttle.recordFailure(clientId);
        throw audited(unauthorized(LOGIN_FAILED));
      }
      deps.throttle.recordSuccess(clientId);
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

    whoami(p: Principal): WhoAmI {
      return {
        identityId: p.identityId,
        clientId: p.clientId,
        name: p.name,
        tenantId: p.tenantId,
        role: p.role,
        policies: p.policies,
        tokenExpiresAt: p.tokenExpiresAt.toISOString(),
      };
    },
  };
}

export type AuthService = ReturnType<typeof authService>;
