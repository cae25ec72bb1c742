import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../support/test-app.ts';
import { makeSelfSignedCert, opensslAvailable } from '../support/tls.ts';

/**
 * `upgrade-insecure-requests` makes a browser fetch every subresource over https://. Over plain HTTP from any address
 * but localhost that left /docs blank (Swagger UI's scripts asked for an https:// nobody serves), so the policy
 * carries it only when the server itself serves TLS.
 */

const policies = async (t: TestApp) => {
  const docs = await t.app.inject({ url: '/docs' });
  const api = await t.app.inject({ url: '/healthz' });
  expect(docs.statusCode).toBe(200);
  return { docs: String(docs.headers['content-security-policy']), api: String(api.headers['content-security-policy']) };
};

describe('over plain HTTP', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t?.close());

  it('neither the API nor /docs asks the browser to upgrade to https', async () => {
    const { docs, api } = await policies(t);
    expect(api).toContain("default-src 'none'");
    expect(docs).toContain("script-src 'self'");
    expect(api).not.toContain('upgrade-insecure-requests');
    expect(docs).not.toContain('upgrade-insecure-requests');
  });
});

describe.skipIf(!opensslAvailable())('served over TLS', () => {
  let t: TestApp;
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'coffer-csp-'));
    const c = makeSelfSignedCert(dir);
    t = await createTestApp({ COFFER_TLS_CERT_FILE: c.certFile, COFFER_TLS_KEY_FILE: c.keyFile });
  });
  afterAll(async () => {
    await t?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('both the API and /docs keep upgrade-insecure-requests', async () => {
    const { docs, api } = await policies(t);
    expect(api).toContain('upgrade-insecure-requests');
    expect(docs).toContain('upgrade-insecure-requests');
  });
});
