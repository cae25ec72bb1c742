import type { Policy, PrincipalRole } from '@coffer/contracts';

/** Who is calling, as established from a verified token and the identity's current state in the database. */
export interface Principal {
  identityId: string;
  clientId: string;
  name: string;
  tenantId: string;
  role: PrincipalRole;
  /** Current policies (read per request, so narrowing applies to the next request), templates filled from `claims`. */
  policies: readonly Policy[];
  /** A federated login's verified claims that policy templates use; absent for client-secret logins. */
  claims?: Readonly<Record<string, string>> | undefined;
  tokenId: string;
  /** The session the token came from (a person's `coffer login`), if any. */
  sessionId?: string | undefined;
  /** The tenant's per-identity request rate limit, if it set one. */
  rateLimitPerSecond: number | null;
  /** The identity revision this principal was built from (hot reads verify it in the database). */
  revision: number;
  /** Credential version the token was issued under. */
  credentialVersion: number;
  /** Built from a cached identity (only hot reads, whose statement re-checks the revision, use those). */
  cached: boolean;
  tokenExpiresAt: Date;
}

/** The authenticated caller; routes that declare an action only run after `authenticate` has set it. */
export function principalOf(holder: { principal: Principal | null }): Principal {
  if (!holder.principal) throw new Error('route ran without an authenticated principal');
  return holder.principal;
}
