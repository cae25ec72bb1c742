import { z } from 'zod';
import { Timestamp, Uuid } from './common.ts';

export const WebhookEvent = z
  .enum([
    'secret.rotated',
    'secret.rotation_failed',
    'secret.written',
    'secret.deleted',
    'secret.version_revoked',
    'deployment.revoked',
    'key.rotated',
    'lease.revoke_failed',
  ])
  .meta({ id: 'WebhookEvent' });
export type WebhookEvent = z.infer<typeof WebhookEvent>;

export const CreateWebhookRequest = z
  .strictObject({
    url: z.url({ protocol: /^https?$/ }).max(2048),
    events: z
      .array(WebhookEvent)
      .min(1)
      .max(10)
      .refine((e) => new Set(e).size === e.length, 'must not repeat an event'),
  })
  .meta({ id: 'CreateWebhookRequest' });
export type CreateWebhookRequest = z.infer<typeof CreateWebhookRequest>;

export const Webhook = z
  .object({ id: Uuid, url: z.string(), events: z.array(WebhookEvent), disabled: z.boolean(), createdAt: Timestamp })
  .meta({ id: 'Webhook' });
export type Webhook = z.infer<typeof Webhook>;

export const CreateWebhookResponse = z
  .object({
    webhook: Webhook,
    signingSecret: z
      .string()
      .describe('Shown once. Verify `coffer-signature: t=<unix>,v1=<hex>` = HMAC-SHA256(secret, t + "." + body)'),
  })
  .meta({ id: 'CreateWebhookResponse' });
export type CreateWebhookResponse = z.infer<typeof CreateWebhookResponse>;

export const WebhookList = z.object({ items: z.array(Webhook) }).meta({ id: 'WebhookList' });

export const WebhookDelivery = z
  .object({
    id: Uuid,
    event: WebhookEvent,
    status: z.enum(['pending', 'delivered', 'failed']),
    attempts: z.number().int(),
    lastStatusCode: z.number().int().nullable(),
    lastError: z.string().nullable(),
    createdAt: Timestamp,
    deliveredAt: Timestamp.nullable(),
  })
  .meta({ id: 'WebhookDelivery' });

export const WebhookDeliveries = z.object({ items: z.array(WebhookDelivery) }).meta({ id: 'WebhookDeliveries' });
