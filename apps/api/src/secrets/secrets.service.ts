import { type SecretReadDeps, secretReads } from './secret-reads.service.ts';
import { type SecretWriteDeps, secretWrites } from './secret-writes.service.ts';

export type SecretServiceDeps = SecretReadDeps & SecretWriteDeps;

/** Secrets of one tenant, as the routes see them: reads (secret-reads.service.ts) and changes (secret-writes.service.ts). */
export function secretService(deps: SecretServiceDeps) {
  return { ...secretReads(deps), ...secretWrites(deps) };
}

export type SecretService = ReturnType<typeof secretService>;
