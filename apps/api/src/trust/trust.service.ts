import { createHash } from 'node:crypto';
import type {
  CreateIssuerRequest,
  FederationAlgorithm,
  JwksSource,
  Policy,
  TrustedIssuer,
  UpdateIssuerRequest,
} from '@coffer/contracts';
import { decodeJwt, decodeProtectedHeader, type JWTPayload, errors as joseErrors, jwtVerify } from 'jose';
import { auditEvent } from '../audit/audit.events.ts';
import type { AuditSink } from '../audit/audit.sink.ts';
import { principalOf } from '../auth/principal.ts';
import { newId } from '../crypto/ids.ts';
import { type RowMacs, rowIntegrityError } from '../crypto/row-macs.ts';
import type { Database } from '../db/database.ts';
import { pgErrorCode } from '../db/pg-errors.ts';
import { AppError, conflict, notFound } from '../errors/app-error.ts';
import type { RequestContext } from '../http/request-context.ts';
import { claimText, globMatches } from './claims.ts';
import { type JwksResolver, JwksUnavailable } from './jwks.ts';
import { type FederationBindingRow, type IssuerRow, issuerMacFields, type TrustQueries } from './trust.queries.ts';

export const DEFAULT_ALGORITHMS: FederationAlgorithm[] = ['RS256', 'ES256'];
const DEFAULT_MAX_AGE = 3600;
const DEFAULT_SKEW = 30;

/** Why a subject token was refused: audited precisely, answered uniformly. */
export type FederationRefusal =
  | 'malformed_token'
  | 'unknown_identity'
  | 'identity_disabled'
  | 'no_bindings'
  | 'unknown_issuer'
  | 'bad_algorithm'
  | 'unknown_kid'
  | 'bad_signature'
  | 'bad_audience'
  | 'expired'
  | 'not_yet_valid'
  | 'too_old'
  | 'missing_claim'
  | 'jwks_unavailable'
  | 'claim_mismatch'
  | 'replayed';

export class FederationRefused extends Error {
  constructor(
    readonly reason: FederationRefusal,
    readonly issuer?: IssuerRow,
    readonly subject?: string,
  ) {
    super(reason);
  }
}

export interface FederatedLogin {
  issuer: IssuerRow;
  subject: string;
  /** The binding's claims as the token had them (for the audit event). */
  matched: Record<string, string>;
  payload: JWTPayload;
  policies: Policy[];
}

export interface TrustServiceDeps {
  db: Database;
  queries: TrustQueries;
  jwks: JwksResolver;
  audit: Pick<AuditSink, 'appendInTx' | 'record'>;
  /** Checks an issuer row's MAC before a login is verified against its keys, audiences and limits. */
  macs: Pick<RowMacs, 'issuerVerifies'>;
}

export const defaultAudience = (slug: string) => `coffer:${slug}`;

export function toIssuer(r: IssuerRow): TrustedIssuer {
  return {
    id: r.id,
    name: r.name,
    issuer: r.issuer,
    jwks: r.jwks as JwksSource,
    audiences: r.audiences,
    algorithms: r.algorithms as FederationAlgorithm[],
    maxTokenAgeSeconds: r.maxTokenAgeSeconds,
    clockSkewSeconds: r.clockSkewSeconds,
    createdAt: r.createdAt.toISOString(),
    updatedAt: r.updatedAt.toISOString(),
  };
}

const versionOf = (r: IssuerRow) => r.updatedAt.toISOString();

function refusalOf(err: unknown): FederationRefusal {
  if (err instanceof JwksUnavailable) return 'jwks_unavailable';
  // maxTokenAge is checked on iat, and reported as expiry of the token's age.
  if (err instanceof joseErrors.JWTExpired) return err.claim === 'iat' ? 'too_old' : 'expired';
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.claim === 'nbf') return 'not_yet_valid';
    if (err.claim === 'iat') return err.reason === 'missing' ? 'missing_claim' : 'too_old';
    if (err.claim === 'aud') return 'bad_audience';
    if (err.claim === 'exp') return 'missing_claim';
    return 'claim_mismatch';
  }
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return 'bad_algorithm';
  if (err instanceof joseErrors.JWKSNoMatchingKey) return 'unknown_kid';
  if (err instanceof joseErrors.JWKSMultipleMatchingKeys) return 'unknown_kid';
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'bad_signature';
  return 'malformed_token';
}

function bindingMatches(
  b: FederationBindingRow,
  issuer: IssuerRow,
  payload: JWTPayload,
): Record<string, string> | null {
  if (b.issuer !== issuer.name && b.issuer !== issuer.id) return null;
  if (b.subject !== undefined && !(typeof payload.sub === 'string' && globMatches(b.subject, payload.sub))) return null;
  const matched: Record<string, string> = {};
  for (const [path, pattern] of Object.entries(b.claims ?? {})) {
    const value = claimText(payload, path);
    if (value === undefined || !globMatches(pattern, value)) return null;
    matched[path] = value;
  }
  return matched;
}

/**
 * Workload identity federation: the issuers a tenant trusts, and the exchange of one of their tokens for a Coffer
 * token. Verification: `iss` is a trusted issuer of the identity's tenant; the signature verifies under its keys
 * with a pinned asymmetric algorithm; `aud` holds one of its audiences; `exp`, `nbf` and `iat` hold within the
 * skew and the token is no older than the issuer allows; some binding of the identity matches; the token has not
 * been exchanged before while still valid.
 */
export function trustService(deps: TrustServiceDeps) {
  const { queries, audit } = deps;

  async function verify(tenantId: string, token: string): Promise<{ issuer: IssuerRow; payload: JWTPayload }> {
    let iss: unknown;
    let alg: unknown;
    try {
      iss = decodeJwt(token).iss;
      alg = decodeProtectedHeader(token).alg;
    } catch {
      throw new FederationRefused('malformed_token');
    }
    if (typeof iss !== 'string') throw new FederationRefused('malformed_token');
    const issuer = await queries.byIssuer(tenantId, iss);
    if (!issuer) throw new FederationRefused('unknown_issuer');
    // Keys, issuer URL or audiences swapped outside the API would let another signer log in: integrity_error.
    if (!deps.macs.issuerVerifies(issuer.mac, issuerMacFields(issuer))) throw rowIntegrityError();
    if (typeof alg !== 'string' || !issuer.algorithms.includes(alg))
      throw new FederationRefused('bad_algorithm', issuer);
    const options = {
      issuer: issuer.issuer,
      audience: issuer.audiences,
      algorithms: issuer.algorithms,
      clockTolerance: issuer.clockSkewSeconds,
      maxTokenAge: issuer.maxTokenAgeSeconds,
      requiredClaims: ['exp', 'iat'],
    };
    const source = {
      id: issuer.id,
      issuer: issuer.issuer,
      jwks: issuer.jwks as JwksSource,
      version: versionOf(issuer),
    };
    try {
      const keys = await deps.jwks.keys(source);
      try {
        return { issuer, payload: (await jwtVerify(token, keys, options)).payload };
      } catch (err) {
        // The issuer may have rotated its keys since they were fetched: once, fetch them again.
        if (!(err instanceof joseErrors.JWKSNoMatchingKey)) throw err;
        const fresh = await deps.jwks.refetch(source);
        if (!fresh) throw err;
        return { issuer, payload: (await jwtVerify(token, fresh, options)).payload };
      }
    } catch (err) {
      throw new FederationRefused(refusalOf(err), issuer);
    }
  }

  return {
    /** Verifies a subject token for an identity; throws FederationRefused with the precise reason. */
    async exchange(
      identity: {
        id: string;
        tenantId: string;
        disabled: boolean;
        /** As read with the identity and checked by its row MAC: never read again, so never read unchecked. */
        federation: FederationBindingRow[];
        policies: Policy[];
      },
      subjectToken: string,
    ): Promise<FederatedLogin> {
      const bindings = identity.federation;
      if (bindings.length === 0) throw new FederationRefused('no_bindings');
      const { issuer, payload } = await verify(identity.tenantId, subjectToken);
      const subject = typeof payload.sub === 'string' ? payload.sub : '';
      if (identity.disabled) throw new FederationRefused('identity_disabled', issuer, subject);
      let matched: Record<string, string> | null = null;
      for (const b of bindings) {
        matched = bindingMatches(b, issuer, payload);
        if (matched) break;
      }
      if (!matched) throw new FederationRefused('claim_mismatch', issuer, subject);
      const replayKey = createHash('sha256')
        .update(
          typeof payload.jti === 'string' && payload.jti.length > 0 ? `jti:${payload.jti}` : `token:${subjectToken}`,
        )
        .digest();
      const expiresAt = new Date(((payload.exp as number) + issuer.clockSkewSeconds) * 1000);
      if (!(await queries.claimToken(identity.tenantId, issuer.id, replayKey, expiresAt))) {
        throw new FederationRefused('replayed', issuer, subject);
      }
      return { issuer, subject, matched, payload, policies: identity.policies };
    },

    async create(ctx: RequestContext, body: CreateIssuerRequest): Promise<TrustedIssuer> {
      const p = principalOf(ctx);
      if ('discovery' in body.jwks && !/^https?:\/\//.test(body.issuer)) {
        throw new AppError('validation_failed', 'OIDC discovery needs an issuer that is an http(s) URL', [
          { path: 'body.issuer', message: 'must be a URL for discovery' },
        ]);
      }
      const slug = await queries.tenantSlug(p.tenantId);
      const id = newId();
      try {
        const row = await deps.db.withTenant(p.tenantId, async (tx) => {
          const created = await queries.insert(
            p.tenantId,
            {
              id,
              name: body.name,
              issuer: body.issuer,
              jwks: body.jwks,
              audiences: body.audiences ?? [defaultAudience(slug ?? p.tenantId)],
              algorithms: body.algorithms ?? DEFAULT_ALGORITHMS,
              maxTokenAgeSeconds: body.maxTokenAgeSeconds ?? DEFAULT_MAX_AGE,
              clockSkewSeconds: body.clockSkewSeconds ?? DEFAULT_SKEW,
            },
            tx,
          );
          await audit.appendInTx(tx, [
            auditEvent(ctx, {
              action: 'trust.create',
              outcome: 'allowed',
              resource: `trust/issuers/${id}`,
              details: { name: body.name, issuer: body.issuer },
            }),
          ]);
          return created;
        });
        return toIssuer(row);
      } catch (err) {
        if (pgErrorCode(err) === '23505') throw conflict('an issuer with this name or issuer URL already exists');
        throw err;
      }
    },

    async list(ctx: RequestContext) {
      const p = principalOf(ctx);
      const rows = await queries.list(p.tenantId);
      await audit.record(auditEvent(ctx, { action: 'trust.list', outcome: 'allowed', resource: 'trust/issuers' }));
      return { items: rows.map(toIssuer) };
    },

    async get(ctx: RequestContext, id: string): Promise<TrustedIssuer> {
      const p = principalOf(ctx);
      const row = await queries.get(p.tenantId, id);
      if (!row) throw notFound('issuer');
      await audit.record(
        auditEvent(ctx, { action: 'trust.read', outcome: 'allowed', resource: `trust/issuers/${id}` }),
      );
      return toIssuer(row);
    },

    async update(ctx: RequestContext, id: string, body: UpdateIssuerRequest): Promise<TrustedIssuer> {
      const p = principalOf(ctx);
      const row = await deps.db.withTenant(p.tenantId, async (tx) => {
        const updated = await queries.update(
          p.tenantId,
          id,
          {
            ...(body.jwks !== undefined ? { jwks: body.jwks } : {}),
            ...(body.audiences !== undefined ? { audiences: body.audiences } : {}),
            ...(body.algorithms !== undefined ? { algorithms: body.algorithms } : {}),
            ...(body.maxTokenAgeSeconds !== undefined ? { maxTokenAgeSeconds: body.maxTokenAgeSeconds } : {}),
            ...(body.clockSkewSeconds !== undefined ? { clockSkewSeconds: body.clockSkewSeconds } : {}),
          },
          tx,
        );
        if (!updated) throw notFound('issuer');
        if ('discovery' in (updated.jwks as JwksSource) && !/^https?:\/\//.test(updated.issuer)) {
          throw new AppError('validation_failed', 'OIDC discovery needs an issuer that is an http(s) URL');
        }
        await audit.appendInTx(tx, [
          auditEvent(ctx, {
            action: 'trust.update',
            outcome: 'allowed',
            resource: `trust/issuers/${id}`,
            details: { fields: Object.keys(body).sort().join(',') },
          }),
        ]);
        return updated;
      });
      deps.jwks.forget(id);
      return toIssuer(row);
    },

    async remove(ctx: RequestContext, id: string): Promise<void> {
      const p = principalOf(ctx);
      await deps.db.withTenant(p.tenantId, async (tx) => {
        const row = await queries.get(p.tenantId, id, tx);
        if (!row) throw notFound('issuer');
        const bound = await queries.bindingsOf(p.tenantId, row, tx);
        if (bound > 0) {
          throw conflict(
            `${bound} identit${bound === 1 ? 'y is' : 'ies are'} bound to this issuer: remove the bindings first`,
          );
        }
        await queries.remove(p.tenantId, id, tx);
        await audit.appendInTx(tx, [
          auditEvent(ctx, { action: 'trust.delete', outcome: 'allowed', resource: `trust/issuers/${id}` }),
        ]);
      });
      deps.jwks.forget(id);
    },
  };
}

export type TrustService = ReturnType<typeof trustService>;
