import { z } from 'zod';
import { ENVIRONMENT_SLUG_PATTERN } from './patterns.ts';

/** The environment every tenant has: where a request without `?env` goes, and where all data made before lives. */
export const DEFAULT_ENVIRONMENT = 'default';

export const EnvironmentSlug = z
  .string()
  .regex(ENVIRONMENT_SLUG_PATTERN, 'must be 1-63 lower-case letters, digits, _ or - starting with a letter or digit')
  .meta({ id: 'EnvironmentSlug' });

/** `?env=` on every secret, bundle, list, rotation and audit route: the tenant's `default` when absent. */
export const EnvQuery = z.strictObject({
  env: EnvironmentSlug.optional().describe('The environment; the tenant’s `default` when absent'),
});
