import { z } from 'zod';
import { Timestamp, Uuid } from './common.ts';

export const SessionState = z.enum(['active', 'expired', 'revoked']).meta({ id: 'SessionState' });
export type SessionState = z.infer<typeof SessionState>;

/**
 * Why a session ended before its time: revoked (by its owner, `coffer logout`, or a tenant admin), a refresh
 * credential used twice (it was copied, and one of the two copies was used after the other), or its identity was
 * disabled, deleted or given a new client secret.
 */
export const SessionRevokedReason = z
  .enum(['revoked', 'refresh_reuse', 'identity_changed'])
  .meta({ id: 'SessionRevokedReason' });
export type SessionRevokedReason = z.infer<typeof SessionRevokedReason>;

export const Session = z
  .object({
    id: Uuid,
    identityId: Uuid,
    identityName: z.string(),
    name: z.string().nullable().describe('The label the client gave at login (e.g. a host name)'),
    method: z.enum(['client_secret', 'federation']).describe('How the login that opened it authenticated'),
    state: SessionState,
    current: z.boolean().describe('The session the caller’s own token came from'),
    createdAt: Timestamp,
    expiresAt: Timestamp,
    lastRefreshedAt: Timestamp.nullable(),
    refreshes: z.number().int().nonnegative(),
    lastSourceIp: z.string().nullable(),
    revokedAt: Timestamp.nullable(),
    revokedReason: SessionRevokedReason.nullable(),
  })
  .meta({ id: 'Session' });
export type Session = z.infer<typeof Session>;

export const SessionList = z.object({ items: z.array(Session) }).meta({ id: 'SessionList' });
export type SessionList = z.infer<typeof SessionList>;

export const ListSessionsQuery = z.strictObject({
  all: z
    .enum(['true', 'false'])
    .transform((v) => v === 'true')
    .optional()
    .describe('Every session of the tenant (tenant admin); default: the caller’s own'),
  identityId: Uuid.optional().describe('One identity’s sessions (tenant admin, or the caller’s own id)'),
  state: z.enum(['active', 'expired', 'revoked']).optional(),
});
// No component id: query parameters are inlined in the document (a $ref there is not resolved).
export type ListSessionsQuery = z.infer<typeof ListSessionsQuery>;
