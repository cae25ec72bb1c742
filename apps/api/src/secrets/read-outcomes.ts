import { AppError, notFound } from '../errors/app-error.ts';

/**
 * Why coffer.read_secret did or did not return a plaintext. The database decides it (db/sql/functions/read_secret.sql);
 * this module only maps each outcome to what the caller sees, in one exhaustive switch.
 */
export type ReadOutcome =
  | 'ok'
  | 'not_found'
  | 'no_version'
  | 'expired'
  | 'destroyed'
  | 'revoked'
  | 'rotated_out'
  | 'key_missing'
  | 'identity_changed';

/** coffer.read_bundle skips secrets that are deleted, expired or destroyed, so only these can come back. */
export type BundleOutcome = Extract<ReadOutcome, 'ok' | 'key_missing' | 'identity_changed'>;

/** Which version a read asks for; `previous` is the one before the current. */
export type WantedVersion = number | 'previous' | undefined;

/**
 * What a read does next: use the value, or reload what the database found stale and read again (the identity, after
 * its principal was cached; the tenant's data keys, after another replica rotated them).
 */
export type ReadStep = { next: 'value' } | { next: 'reload'; stale: 'identity' | 'keys' };

export function assertNever(x: never): never {
  throw new Error(`unhandled case: ${String(x)}`);
}

export interface OutcomeFacts {
  outcome: ReadOutcome;
  version: number | null;
  expires_at: Date | null;
  served_until: Date | null;
  revoked_at?: Date | null;
}

/** The step for one read's outcome; the outcomes that end the read throw the AppError the caller sees. */
export function readStep(row: OutcomeFacts, wanted: WantedVersion): ReadStep {
  const outcome = row.outcome;
  switch (outcome) {
    case 'ok':
      return { next: 'value' };
    case 'identity_changed':
      return { next: 'reload', stale: 'identity' };
    case 'key_missing':
      return { next: 'reload', stale: 'keys' };
    case 'not_found':
      throw notFound('secret');
    case 'no_version':
      throw notFound(wanted === 'previous' ? 'a previous version of the secret' : `version ${wanted} of the secret`);
    case 'expired':
      throw new AppError('expired', `the secret expired at ${row.expires_at?.toISOString()}`);
    case 'destroyed':
      throw new AppError('gone', `version ${row.version} was destroyed`);
    case 'revoked':
      throw new AppError('gone', `version ${row.version} was revoked at ${row.revoked_at?.toISOString()}`);
    case 'rotated_out':
      throw new AppError(
        'gone',
        `version ${row.version} was rotated out; its grace period ended at ${row.served_until?.toISOString()}`,
      );
    default:
      return assertNever(outcome);
  }
}

/** The step for a bundle read: a changed identity first (nothing was read), then any missing key. */
export function bundleStep(rows: readonly { outcome: BundleOutcome }[]): ReadStep {
  let step: ReadStep = { next: 'value' };
  for (const { outcome } of rows) {
    switch (outcome) {
      case 'ok':
        break;
      case 'identity_changed':
        return { next: 'reload', stale: 'identity' };
      case 'key_missing':
        step = { next: 'reload', stale: 'keys' };
        break;
      default:
        return assertNever(outcome);
    }
  }
  return step;
}
