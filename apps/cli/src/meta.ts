export const VERSION = '0.1.0';

/**
 * Every request of this process carries this prefix in its request id, so `audit --follow` can skip its own polls.
 * It only has to differ from other processes' prefixes, not be unguessable (a client chooses its request ids anyway),
 * so Math.random (seeded per process by V8) is enough, and `coffer run` does not load node:crypto for it.
 */
export const REQUEST_ID_PREFIX = `cli-${Math.floor(Math.random() * 2 ** 32)
  .toString(16)
  .padStart(8, '0')}-`;

export const USER_AGENT = `coffer-cli/${VERSION}`;
