import type pg from 'pg';
import { afterAll, beforeAll } from 'vitest';
import { rootToken } from './factories.ts';
import { ownerClient } from './secrets.ts';
import { createTestApp, type TestApp } from './test-app.ts';

export interface OwnerSuite {
  /** The app under test (in-process, `inject`). */
  t: TestApp;
  /** A connection as the schema owner, for inspection and deliberate tampering. */
  owner: pg.Client;
  /** The platform admin's token. */
  root: string;
}

/**
 * The setup most suites share: a test app, an owner connection and the platform admin's token, made before the
 * file's tests and closed after them. `set` hands them to the file's own variables:
 * `ownerSuite((s) => ({ t, owner, root } = s));`.
 */
export function ownerSuite(set: (s: OwnerSuite) => void): void {
  let s: OwnerSuite | undefined;
  beforeAll(async () => {
    const t = await createTestApp();
    s = { t, owner: await ownerClient(), root: await rootToken(t.app) };
    set(s);
  });
  afterAll(async () => {
    await s?.owner.end();
    await s?.t.close();
  });
}
