import { createHash, createPublicKey, randomBytes, randomUUID, timingSafeEqual, verify } from 'node:crypto';
import {
  type IssuedSession,
  type ListSessionsQuery,
  PLATFORM_TENANT_ID,
  type RefreshSessionRequest,
  type Session,
  type SessionList,
  type SessionRequest,
  sessionRefreshMessage,
  type TokenResponse,
} from '@coffer/contracts';
import { auditEvent } from '../audit/audit.events.ts';
import type { AuditSink } from '../audit/audit.sink.ts';
import { principalOf } from '../auth/principal.ts';
import { newId } from '../crypto/ids.ts';
import type { Database, Tx } from '../db/database.ts';
import { audited, forbidden, notFound, unauthorized } from '../errors/app-error.ts';
import type { RequestContext } from '../http/request-context.ts';
import type { IdentityQueries } from '../identities/identities.queries.ts';
import type { SessionQueries, SessionRevokedReason, SessionRow } from './sessions.queries.ts';

/** How far the client's `signedAt` may be from the server's clock, either way. */
export const SIGNATURE_WINDOW_MS = 5 * 60_000;

export interface SessionServiceDeps {
  db: Pick<Database, 'withTenant'>;
  sessions: SessionQueries;
  identities: Pick<IdentityQueries, 'findById'>;
  audit: Pick<AuditSink, 'record' | 'appendInTx'>;
  sign: (claims: Record<string, unknown>, ttlSeconds: number) => string;
  /** A session's absolute lifetime from login: no refresh extends it. */
  maxAgeSeconds: number;
  defaultTtlSeconds: number;
  now?: () => number;
}

/** What a login knows of the identity it opens a session for. */
export interface SessionOwner {
  id: string;
  tenantId: string;
  role: string;
  credentialVersion: number;
  tokenTtlSeconds: number | null;
}

const REFUSED = 'the session is not valid (expired, revoked or not this machine’s): log in again';

type Refusal =
  | 'unknown_session'
  | 'revoked'
  | 'expired'
  | 'stale_signature'
  | 'bad_signature'
  | 'unknown_refresh_token'
  | 'refresh_reuse'
  | 'identity_changed';

const sha256 = (v: string): Buffer => createHash('sha256').update(v).digest();

/** `coffer_rt_<generation>_<256 random bits>`: the generation says which replacement it is, for reuse detection. */
function newRefreshToken(generation: number): string {
  return `coffer_rt_${generation}_${randomBytes(32).toString('base64url')}`;
}

const generationOf = (token: string): number => Number(token.split('_')[2]);

/** An Ed25519 public key from its 32 raw bytes (the DER prefix of an Ed25519 SubjectPublicKeyInfo is fixed). */
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const publicKeyOf = (raw: Buffer) =>
  createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, raw]), format: 'der', type: 'spki' });

function stateOf(row: SessionRow, now: number): Session['state'] {
  if (row.revokedAt) return 'revoked';
  return row.expiresAt.getTime() <= now ? 'expired' : 'active';
}

/**
 * People's sessions: a login that asks for one gets, besides the access token, a refresh credential that renews it
 * until the session's absolute end. The server keeps a hash of the credential and the machine's public key; each
 * refresh presents the credential, signed with the machine's private key over the moment and the credential's
 * hash, and gets the next credential (the used one is dead). An earlier credential presented with a valid
 * signature means two copies are in use: the session ends.
 */
export function sessionService(deps: SessionServiceDeps) {
  const { db, sessions, audit } = deps;
  const now = deps.now ?? Date.now;

  const accessTokenFor = (
    owner: { id: string; tenantId: string; role: string; credentialVersion: number; tokenTtlSeconds: number | null },
    session: { id: string; expiresAt: Date; claims: Record<string, string> | null },
  ): { accessToken: string; expiresIn: number } => {
    // Never past the session's end, so an ended session leaves no token behind it.
    const left = Math.floor((session.expiresAt.getTime() - now()) / 1000);
    const ttl = Math.max(1, Math.min(owner.tokenTtlSeconds ?? deps.defaultTtlSeconds, left));
    const accessToken = deps.sign(
      {
        sub: owner.id,
        tid: owner.tenantId,
        role: owner.role,
        cv: owner.credentialVersion,
        jti: randomUUID(),
        sid: session.id,
        ...(session.claims && Object.keys(session.claims).length > 0 ? { clm: session.claims } : {}),
      },
      ttl,
    );
    return { accessToken, expiresIn: ttl };
  };

  const refreshEvent = (
    ctx: RequestContext,
    tenantId: string,
    sessionId: string,
    row: SessionRow | undefined,
    refusal: Refusal | null,
  ) =>
    auditEvent(ctx, {
      action: 'auth.refresh',
      outcome: refusal ? 'denied' : 'allowed',
      tenantId,
      actorId: row?.identityId ?? null,
      resource: `sessions/${sessionId}`,
      errorCode: refusal ? 'unauthorized' : null,
      details: {
        ...(refusal ? { reason: refusal } : { generation: String((row?.generation ?? 0) + 1) }),
        ...(refusal === 'refresh_reuse' || refusal === 'identity_changed' ? { sessionRevoked: 'true' } : {}),
      },
    });

  return {
    /** Opens a session for a login that was just allowed; the refresh credential is returned once, never stored. */
    async open(
      ctx: RequestContext,
      owner: SessionOwner,
      request: SessionRequest,
      method: 'client_secret' | 'federation',
      claims: Record<string, string> | undefined,
    ): Promise<{ session: IssuedSession; accessToken: string; expiresIn: number }> {
      const refreshToken = newRefreshToken(1);
      const expiresAt = new Date(now() + deps.maxAgeSeconds * 1000);
      const row = await db.withTenant(owner.tenantId, async (tx) => {
        await sessions.purgeEnded(owner.tenantId, owner.id, tx);
        return sessions.insert(
          owner.tenantId,
          {
            id: newId(),
            identityId: owner.id,
            name: request.name ?? null,
            method,
            publicKey: Buffer.from(request.publicKey, 'base64url'),
            refreshHash: sha256(refreshToken),
            generation: 1,
            credentialVersion: owner.credentialVersion,
            claims: claims && Object.keys(claims).length > 0 ? claims : null,
            expiresAt,
            lastSourceIp: ctx.sourceIp,
          },
          tx,
        );
      });
      return {
        ...accessTokenFor(owner, row),
        session: { id: row.id, refreshToken, expiresAt: row.expiresAt.toISOString() },
      };
    },

    /**
     * Every refusal answers the same 401; the audit event names the precise reason. A signature is checked before
     * the credential is looked at, so a copied credential without the machine's key changes nothing (it can
     * neither renew nor end the session).
     */
    async refresh(ctx: RequestContext, body: RefreshSessionRequest): Promise<TokenResponse> {
      const tenantId = await sessions.tenantOf(body.sessionId);
      if (!tenantId) {
        await audit.record(refreshEvent(ctx, PLATFORM_TENANT_ID, body.sessionId, undefined, 'unknown_session'));
        throw audited(unauthorized(REFUSED));
      }
      const outcome = await db.withTenant(tenantId, async (tx) => {
        const row = await sessions.forUpdate(tenantId, body.sessionId, tx);
        const refuse = async (refusal: Refusal, revoke?: SessionRevokedReason) => {
          if (revoke && row) {
            // The end of the session commits with its audit event, even though the request is refused.
            await sessions.revoke(tenantId, row.id, revoke, tx);
            await audit.appendInTx(tx, [refreshEvent(ctx, tenantId, body.sessionId, row, refusal)]);
            return { refusal, row, logged: true } as const;
          }
          return { refusal, row, logged: false } as const;
        };
        if (!row) return refuse('unknown_session');
        if (row.revokedAt) return refuse('revoked');
        if (row.expiresAt.getTime() <= now()) return refuse('expired');
        if (Math.abs(Date.parse(body.signedAt) - now()) > SIGNATURE_WINDOW_MS) return refuse('stale_signature');
        const message = sessionRefreshMessage(row.id, body.signedAt, sha256(body.refreshToken).toString('base64url'));
        const signed = verify(
          null,
          Buffer.from(message, 'utf8'),
          publicKeyOf(row.publicKey),
          Buffer.from(body.signature, 'base64url'),
        );
        if (!signed) return refuse('bad_signature');
        const generation = generationOf(body.refreshToken);
        if (generation < row.generation) return refuse('refresh_reuse', 'refresh_reuse');
        if (generation !== row.generation || !timingSafeEqual(sha256(body.refreshToken), row.refreshHash)) {
          return refuse('unknown_refresh_token');
        }
        const identity = await deps.identities.findById(tenantId, row.identityId, tx);
        if (!identity || identity.disabled || identity.credentialVersion !== row.credentialVersion) {
          return refuse('identity_changed', 'identity_changed');
        }
        const next = newRefreshToken(row.generation + 1);
        await sessions.update(
          tenantId,
          row.id,
          {
            refreshHash: sha256(next),
            generation: row.generation + 1,
            lastRefreshedAt: new Date(now()),
            lastSourceIp: ctx.sourceIp,
          },
          tx,
        );
        await audit.appendInTx(tx, [refreshEvent(ctx, tenantId, row.id, row, null)]);
        const token = accessTokenFor(identity, row);
        return {
          refusal: null,
          response: {
            ...token,
            tokenType: 'Bearer' as const,
            session: { id: row.id, refreshToken: next, expiresAt: row.expiresAt.toISOString() },
          },
        } as const;
      });
      if (outcome.refusal === null) return outcome.response;
      if (!outcome.logged) {
        await audit.record(refreshEvent(ctx, tenantId, body.sessionId, outcome.row, outcome.refusal));
      }
      throw audited(unauthorized(REFUSED));
    },

    /** The caller's sessions; a tenant admin (or the platform admin, in the platform) may ask for anyone's. */
    async list(ctx: RequestContext, q: ListSessionsQuery): Promise<SessionList> {
      const p = principalOf(ctx);
      const manager = p.role === 'admin' || p.role === 'platform';
      if ((q.all || (q.identityId && q.identityId !== p.identityId)) && !manager) {
        throw forbidden('only a tenant admin may list the sessions of other identities');
      }
      const identityId = q.all ? q.identityId : (q.identityId ?? p.identityId);
      const rows = await sessions.list(p.tenantId, identityId, 1000);
      const at = now();
      const items = rows
        .map(
          (r): Session => ({
            id: r.id,
            identityId: r.identityId,
            identityName: r.identityName,
            name: r.name,
            method: r.method,
            state: stateOf(r, at),
            current: r.id === p.sessionId,
            createdAt: r.createdAt.toISOString(),
            expiresAt: r.expiresAt.toISOString(),
            lastRefreshedAt: r.lastRefreshedAt?.toISOString() ?? null,
            refreshes: r.generation - 1,
            lastSourceIp: r.lastSourceIp,
            revokedAt: r.revokedAt?.toISOString() ?? null,
            revokedReason: r.revokedReason,
          }),
        )
        .filter((s) => q.state === undefined || s.state === q.state);
      await audit.record(
        auditEvent(ctx, {
          action: 'sessions.list',
          outcome: 'allowed',
          resource: identityId ? `identities/${identityId}` : 'sessions',
          details: { count: items.length },
        }),
      );
      return { items };
    },

    /**
     * Ends a session at once: its refresh credential and every access token it issued stop. Another identity's
     * session is, to anyone but a tenant admin, as absent as one that never existed.
     */
    async revoke(ctx: RequestContext, id: string): Promise<void> {
      const p = principalOf(ctx);
      const manager = p.role === 'admin' || p.role === 'platform';
      await db.withTenant(p.tenantId, async (tx: Tx) => {
        const row = await sessions.forUpdate(p.tenantId, id, tx);
        if (!row || (row.identityId !== p.identityId && !manager)) throw notFound('session');
        await sessions.revoke(p.tenantId, id, 'revoked', tx);
        await audit.appendInTx(tx, [
          auditEvent(ctx, {
            action: 'sessions.revoke',
            outcome: 'allowed',
            resource: `sessions/${id}`,
            details: {
              identityId: row.identityId,
              ...(row.revokedAt ? { alreadyEnded: 'true' } : {}),
              ...(id === p.sessionId ? { own: 'true' } : {}),
            },
          }),
        ]);
      });
    },
  };
}

export type SessionService = ReturnType<typeof sessionService>;
