import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Checks a Coffer webhook delivery: `coffer-signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + "." + body)>`.
 * Pass the raw request body exactly as received (before any JSON parsing). False when the header is malformed,
 * no `v1` matches, or the timestamp is more than `toleranceSec` away from now (a replayed delivery).
 */
export function verifyWebhookSignature(
  secret: string,
  header: string | null | undefined,
  body: string | Uint8Array,
  toleranceSec = 300,
  nowSec: number = Math.floor(Date.now() / 1000),
): boolean {
  if (!header) return false;
  let timestamp: number | null = null;
  const signatures: string[] = [];
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const k = part.slice(0, eq).trim();
    const v = part.slice(eq + 1).trim();
    if (k === 't' && /^\d{1,12}$/.test(v)) timestamp = Number(v);
    else if (k === 'v1' && /^[0-9a-f]{64}$/i.test(v)) signatures.push(v.toLowerCase());
  }
  if (timestamp === null || signatures.length === 0) return false;
  if (Math.abs(nowSec - timestamp) > toleranceSec) return false;
  const payload = typeof body === 'string' ? Buffer.from(body, 'utf8') : Buffer.from(body);
  const expected = createHmac('sha256', secret).update(`${timestamp}.`).update(payload).digest();
  return signatures.some((s) => timingSafeEqual(Buffer.from(s, 'hex'), expected));
}

/** The body of a `secret.rotated` delivery (other events carry their own fields beside `id` and `type`). */
export interface WebhookDelivery {
  id: string;
  type: string;
  tenantId?: string;
  path?: string;
  fromVersion?: number;
  toVersion?: number;
  [field: string]: unknown;
}
