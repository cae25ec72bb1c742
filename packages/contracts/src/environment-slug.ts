import { z } from 'zod';

/** The environment every tenant has: where a request without `?env` goes, and where all data made before lives. */
export const DEFAULT_ENVIRONMENT = 'default';

/** Lower-case, so `Production` and `production` can never be two environments. */
export const ENVIRONMENT_SLUG_PATTERN = /^[a-z0-9][a-z0-9_-]{0,62}$/;

export const EnvironmentSlug = z
  .string()
  .regex(ENVIRONMENT_SLUG_PATTERN, 'must be 1-63 lower-case letters, digits, _ or - starting with a letter or digit')
  .meta({ id: 'EnvironmentSlug' });

/** `?env=` on every secret, bundle, list, rotation and audit route: the tenant's `default` when absent. */
export const EnvQuery = z.strictObject({
  env: EnvironmentSlug.optional().describe('The environment; the tenant’s `default` when absent'),
});
