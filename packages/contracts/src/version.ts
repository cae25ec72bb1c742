/**
 * The version of the wire format these schemas describe, `major.minor`.
 *
 * - The major number is the path prefix every API route carries (`/v1/…`). It changes only when a request or a
 *   response that was valid stops being valid (a field removed or retyped, a route gone), and with it the prefix.
 * - The minor number grows when the format gains something a client may use: a route, an optional request field, a
 *   response field. A client built on an older minor keeps working against a newer server (response schemas are
 *   `z.object`, which drops keys it does not know); it just cannot use what it does not know.
 *
 * The package's own semver follows it: a new major of the wire format is a new major of @coffer/contracts.
 */
export const WIRE_FORMAT_VERSION = '1.0';

/** The path prefix of the wire format's major version: every route but health, readiness and JWKS starts with it. */
export const API_PREFIX = `/v${WIRE_FORMAT_VERSION.split('.')[0]}`;
