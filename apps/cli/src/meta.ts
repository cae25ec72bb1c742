import { randomBytes } from 'node:crypto';

export const VERSION = '0.1.0';

/** Every request of this process carries this prefix in its request id, so `audit --follow` can skip its own polls. */
export const REQUEST_ID_PREFIX = `cli-${randomBytes(4).toString('hex')}-`;

export const USER_AGENT = `coffer-cli/${VERSION}`;
