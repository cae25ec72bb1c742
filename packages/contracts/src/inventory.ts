import { z } from 'zod';
import { Cursor, storableText, Timestamp } from './common.ts';
import { EnvironmentSlug } from './environment-slug.ts';
import { SecretClass, SecretKind, SecretOwner } from './secrets.ts';

export const InventoryQuery = z.strictObject({
  env: EnvironmentSlug.optional().describe('Only this environment; default every environment'),
  kind: SecretKind.optional(),
  owner: SecretOwner.optional(),
  team: storableText(z.string().min(1).max(128)).optional().describe('Only secrets this team owns'),
  class: SecretClass.optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  cursor: Cursor.optional(),
});

/** One secret in one environment: who owns it, how to reach them, what it is and how often it rotates. No value. */
export const InventoryItem = z
  .object({
    environment: z.string(),
    path: z.string(),
    kind: SecretKind,
    owner: z.string(),
    name: z.string(),
    class: SecretClass.nullable(),
    ownerTeam: z.string().nullable(),
    contact: z.string().nullable(),
    version: z.number().int(),
    rotationIntervalDays: z.number().int().nullable().describe('The rotation cadence; null: no policy'),
    automatic: z.boolean().describe('The scheduler rotates it itself (it has a generator)'),
    lastRotatedAt: Timestamp.nullable(),
    nextRotationAt: Timestamp.nullable(),
    overdue: z.boolean(),
    updatedAt: Timestamp,
    expiresAt: Timestamp.nullable(),
  })
  .meta({ id: 'InventoryItem' });
export type InventoryItem = z.infer<typeof InventoryItem>;

export const InventoryPage = z
  .object({ items: z.array(InventoryItem), nextCursor: Cursor.nullable() })
  .meta({ id: 'InventoryPage' });
export type InventoryPage = z.infer<typeof InventoryPage>;
