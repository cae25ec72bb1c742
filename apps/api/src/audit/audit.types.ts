export type AuditOutcome = 'allowed' | 'denied' | 'error';
export type AuditDetails = Record<string, string | number | boolean | null>;

/** One audit event as written. Never a secret value, key or token: `fingerprint` is a keyed hash where equality matters. */
export interface AuditEvent {
  tenantId: string;
  occurredAt: Date;
  actorId: string | null;
  actorName: string | null;
  action: string;
  resource: string | null;
  version: number | null;
  outcome: AuditOutcome;
  errorCode: string | null;
  requestId: string | null;
  sourceIp: string | null;
  userAgent: string | null;
  fingerprint: string | null;
  details: AuditDetails | null;
}
