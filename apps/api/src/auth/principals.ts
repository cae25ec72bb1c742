import { rowIntegrityError } from '../crypto/row-macs.ts';
import { unauthorized } from '../errors/app-error.ts';
import type { IdentityQueries, TokenIdentity } from '../identities/identities.queries.ts';
import { expandPolicies } from '../trust/claims.ts';
import type { Principal } from './principal.ts';
import type { TokenClaims } from './token-claims.ts';

interface Entry {
  identity: TokenIdentity;
  loadedAt: number;
}

/**
 * Turns verified token claims into a principal from the identity's current state. Most routes read the identity
 * on every request. The hot reads (a secret, a bundle) may use a cached identity because their one SQL statement
 * re-checks the identity's revision and refuses when it moved; `refresh` then reloads it. Either way a disabled,
 * deleted, re-keyed or narrowed identity is refused on its very next request.
 */
export class PrincipalResolver {
  private readonly cache = new Map<string, Entry>();
  /**
   * An identity's policies with the token's claims filled in, kept with the identity row they came from: a cached
   * identity and a remembered token hand the same objects to every request, so the policies are expanded once, and
   * authorization can keep its answers per (frozen) policy set. A reloaded identity is a new row, so a new set.
   */
  private readonly expanded = new WeakMap<
    TokenIdentity,
    { claims: TokenClaims['clm']; policies: Principal['policies'] }
  >();

  private policiesOf(identity: TokenIdentity, claims: TokenClaims['clm']): Principal['policies'] {
    const hit = this.expanded.get(identity);
    if (hit && hit.claims === claims) return hit.policies;
    const policies = Object.freeze(expandPolicies(identity.policies, claims).map((p) => Object.freeze(p)));
    this.expanded.set(identity, { claims, policies });
    return policies;
  }

  constructor(
    private readonly identities: Pick<IdentityQueries, 'forToken'>,
    private readonly o: {
      maxEntries?: number;
      ttlMs?: number;
      /** Whether a session still stands (not revoked, not past its end): a session's tokens die with it. */
      sessionActive?: (tenantId: string, sessionId: string) => Promise<boolean>;
    } = {},
  ) {}

  async resolve(claims: TokenClaims, useCache: boolean): Promise<Principal | null> {
    // A session's token is checked against its session on every request, cached identity or not: people's
    // sessions are not the hot path, and a revoked one must stop at once.
    if (claims.sid && !(await this.o.sessionActive?.(claims.tid, claims.sid))) return null;
    const cached = useCache ? this.cache.get(claims.sub) : undefined;
    const fresh = cached && Date.now() - cached.loadedAt < (this.o.ttlMs ?? 60_000);
    const identity = fresh ? cached.identity : await this.load(claims.tid, claims.sub);
    // A row coffer_app edited (role, policies, credentials, disabled) acts for nobody: integrity_error, audited.
    if (identity && !identity.intact) {
      this.cache.delete(claims.sub);
      throw rowIntegrityError();
    }
    if (!identity || identity.disabled || identity.credentialVersion !== claims.cv || identity.role !== claims.role) {
      this.cache.delete(claims.sub);
      return null;
    }
    return {
      identityId: identity.id,
      clientId: identity.clientId,
      name: identity.name,
      tenantId: claims.tid,
      role: identity.role,
      policies: this.policiesOf(identity, claims.clm),
      claims: claims.clm,
      tokenId: claims.jti,
      ...(claims.sid ? { sessionId: claims.sid } : {}),
      tokenExpiresAt: new Date(claims.exp * 1000),
      rateLimitPerSecond: identity.rateLimitPerSecond,
      revision: identity.revision,
      credentialVersion: claims.cv,
      cached: fresh === true,
    };
  }

  /** The principal rebuilt from the database after a hot read found its identity changed; 401 if it may no longer act. */
  async refresh(p: Principal): Promise<Principal> {
    const next = await this.resolve(
      {
        sub: p.identityId,
        tid: p.tenantId,
        role: p.role,
        cv: p.credentialVersion,
        jti: p.tokenId,
        ...(p.sessionId ? { sid: p.sessionId } : {}),
        iat: 0,
        exp: Math.floor(p.tokenExpiresAt.getTime() / 1000),
        ...(p.claims ? { clm: { ...p.claims } } : {}),
      },
      false,
    );
    if (!next) throw unauthorized('the token is no longer valid: log in again');
    return next;
  }

  invalidate(identityId: string): void {
    this.cache.delete(identityId);
  }

  private async load(tenantId: string, id: string): Promise<TokenIdentity | undefined> {
    const identity = await this.identities.forToken(tenantId, id);
    if (identity) {
      this.cache.delete(id);
      this.cache.set(id, { identity, loadedAt: Date.now() });
      if (this.cache.size > (this.o.maxEntries ?? 50_000)) {
        const oldest = this.cache.keys().next().value;
        if (oldest !== undefined) this.cache.delete(oldest);
      }
    }
    return identity;
  }
}
