/**
 * The shapes of a secret path's parts as plain values, without zod: the schemas in secrets.ts are built from them,
 * and a client that must start fast (the CLI's `coffer run`) checks a path with them without loading zod.
 * Exported as `@coffer/contracts/patterns`.
 */
export const SECRET_KINDS = ['sandbox', 'user', 'shared'] as const;

/** Sandbox id, user id or group name. */
export const SECRET_OWNER_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** Letters, digits, `_ . -`: a name with `.` or `-` is not a shell variable name (`export --format shell` says so). */
export const SECRET_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_.-]{0,127}$/;

/** An environment's slug. Lower-case, so `Production` and `production` can never be two environments. */
export const ENVIRONMENT_SLUG_PATTERN = /^[a-z0-9][a-z0-9_-]{0,62}$/;
