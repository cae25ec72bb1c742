import { randomBytes } from 'node:crypto';
import { v7 as uuidv7 } from 'uuid';

/** Time-ordered ids: keyset pagination by id is creation order. */
export const newId = (): string => uuidv7();

/** Client ids are public; the prefix lets people (and scanners) recognise them. */
export const newClientId = (): string => `coffer_ci_${randomBytes(12).toString('base64url')}`;

/** 256 random bits. The prefix lets secret scanners (and GitHub push protection rules) spot a leaked one. */
export const newClientSecret = (): string => `coffer_cs_${randomBytes(32).toString('base64url')}`;
