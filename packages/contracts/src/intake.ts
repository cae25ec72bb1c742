import { z } from 'zod';
import { storableText, Timestamp, Uuid } from './common.ts';
import { EnvironmentSlug } from './environment-slug.ts';
import { SecretFormat, SecretPathString, SecretValue } from './secrets.ts';

/**
 * Intake links: a one-time URL through which the person who holds a value (an API key, a password) writes it into
 * one secret, validated against a format, without it passing through chat or a ticket. Made by an admin (or a
 * service that may write the secret); opened and used by whoever holds the URL, with no account.
 */

/** Bounds of a link's lifetime, in seconds: at least a minute, at most a week. */
export const INTAKE_MIN_EXPIRES_IN = 60;
export const INTAKE_MAX_EXPIRES_IN = 7 * 86_400;

export const IntakePrompt = z
  .strictObject({
    label: storableText(z.string().min(1).max(200)).describe('What to enter, shown to the person: "Stripe secret key"'),
    help: storableText(z.string().max(2000))
      .optional()
      .describe('Where to find it, shown under the label: "Dashboard → Developers → API keys"'),
  })
  .meta({ id: 'IntakePrompt' });
export type IntakePrompt = z.infer<typeof IntakePrompt>;

export const CreateIntakeRequest = z
  .strictObject({
    path: SecretPathString,
    env: EnvironmentSlug.optional().describe('The environment of the secret; the tenant’s `default` when absent'),
    format: SecretFormat.optional().describe(
      'The rule the value must satisfy; the secret’s own format when absent (a value must satisfy that one too)',
    ),
    expiresIn: z
      .number()
      .int()
      .min(INTAKE_MIN_EXPIRES_IN)
      .max(INTAKE_MAX_EXPIRES_IN)
      .describe('Seconds until the link stops working: 60 to 604800 (7 days)'),
    prompt: IntakePrompt,
  })
  .meta({ id: 'CreateIntakeRequest' });
export type CreateIntakeRequest = z.infer<typeof CreateIntakeRequest>;

export const CreateIntakeResponse = z
  .object({
    id: Uuid.describe('The link’s id (for listing and revoking); not the token'),
    url: z.string().describe('The one-time URL to hand to the person; shown once, only its hash is stored'),
    path: z.string(),
    environment: z.string(),
    expiresAt: Timestamp,
  })
  .meta({ id: 'CreateIntakeResponse' });
export type CreateIntakeResponse = z.infer<typeof CreateIntakeResponse>;

/** The token in a link's URL: 43 characters of base64url (32 random bytes). Anything else is simply not found. */
export const IntakeTokenParams = z.object({
  token: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,128}$/, 'must be the token of an intake link')
    .describe('The token from the link'),
});

/** What the holder of a link sees: the prompt, the rule and the name, never a value, the tenant or the owner. */
export const IntakeView = z
  .object({
    name: z.string().describe('The name of the secret the value goes into'),
    label: z.string(),
    help: z.string().nullable(),
    format: SecretFormat.nullable(),
    expiresAt: Timestamp,
  })
  .meta({ id: 'IntakeView' });
export type IntakeView = z.infer<typeof IntakeView>;

export const SubmitIntakeRequest = z.strictObject({ value: SecretValue }).meta({ id: 'SubmitIntakeRequest' });
export type SubmitIntakeRequest = z.infer<typeof SubmitIntakeRequest>;

export const SubmitIntakeResponse = z
  .object({ name: z.string(), receivedAt: Timestamp })
  .meta({ id: 'SubmitIntakeResponse' });
export type SubmitIntakeResponse = z.infer<typeof SubmitIntakeResponse>;

/**
 * `pending` (usable until it expires), `received` (the value was written), `conflict` (the secret had moved since
 * the link was made, so nothing was written and the link is spent), `revoked`, `expired`.
 */
export const IntakeState = z
  .enum(['pending', 'received', 'conflict', 'revoked', 'expired'])
  .meta({ id: 'IntakeState' });
export type IntakeState = z.infer<typeof IntakeState>;

export const IntakeLink = z
  .object({
    id: Uuid,
    path: z.string(),
    environment: z.string(),
    label: z.string(),
    help: z.string().nullable(),
    format: SecretFormat.nullable(),
    state: IntakeState,
    expectedVersion: z
      .number()
      .int()
      .describe('The version the secret had when the link was made (0: none); the write is compare-and-set on it'),
    receivedVersion: z.number().int().nullable().describe('The version the value was written as'),
    createdAt: Timestamp,
    createdBy: Uuid.describe('The identity the link acts for'),
    expiresAt: Timestamp,
    closedAt: Timestamp.nullable().describe('When it was used, refused for a conflict, or revoked'),
  })
  .meta({ id: 'IntakeLink' });
export type IntakeLink = z.infer<typeof IntakeLink>;

export const ListIntakesQuery = z.strictObject({
  state: IntakeState.optional().describe('Only links in this state'),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
});

export const IntakeList = z.object({ items: z.array(IntakeLink) }).meta({ id: 'IntakeList' });
export type IntakeList = z.infer<typeof IntakeList>;
