import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SecretWithValue, TokenResponse, WhoAmI } from '@coffer/contracts';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { loadConfig } from '../../apps/api/src/config.ts';
import { apiEntry } from '../support/build.ts';
import { bearer, createTenant, rootToken, type TestTenant } from '../support/factories.ts';
import { runServerToExit } from '../support/security.ts';
import { freePort, type ScratchDatabase, scratchDatabase } from '../support/server-process.ts';
import { createTestApp, type TestApp } from '../support/test-app.ts';
import { makeSelfSignedCert, opensslAvailable, request, type SelfSigned } from '../support/tls.ts';

/**
 * Native TLS: an app serving HTTPS with a certificate made at test time, the production refusal of plain HTTP on a
 * network interface (config and process), and the security headers every response carries.
 */

const HAS_OPENSSL = opensslAvailable();
if (!HAS_OPENSSL) {
  process.stderr.write('[tls.test] SKIPPING the HTTPS tests: no `openssl` binary to make a test certificate with\n');
}

const tmp = mkdtempSync(path.join(os.tmpdir(), 'coffer-tls-test-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let cert: SelfSigned | null = null;
const certOrThrow = (): SelfSigned => {
  if (!cert) cert = makeSelfSignedCert(tmp);
  return cert;
};

const key32 = () => randomBytes(32).toString('base64');

describe.skipIf(!HAS_OPENSSL)('over real HTTPS (self-signed certificate made with openssl)', () => {
  let t: TestApp;
  let base: string;
  let tenant: TestTenant;

  beforeAll(async () => {
    const c = certOrThrow();
    t = await createTestApp({ COFFER_TLS_CERT_FILE: c.certFile, COFFER_TLS_KEY_FILE: c.keyFile });
    await t.app.listen({ host: '127.0.0.1', port: 0 });
    const address = t.app.server.address();
    if (!address || typeof address === 'string') throw new Error('no port');
    base = `https://127.0.0.1:${address.port}`;
    tenant = await createTenant(t.app, await rootToken(t.app));
  });
  afterAll(() => t?.close());

  it('logs in, writes and reads a secret, and asks whoami, all over HTTPS with the served certificate', async () => {
    const ca = certOrThrow().cert;
    const loginRes = await request(`${base}/v1/auth/token`, {
      method: 'POST',
      ca,
      body: { clientId: tenant.admin.clientId, clientSecret: tenant.admin.clientSecret },
    });
    expect(loginRes.status, loginRes.body).toBe(200);
    expect(loginRes.peerFingerprint256).toBe(certOrThrow().fingerprint256);
    expect(loginRes.protocol).toMatch(/^TLSv1\.[23]$/);
    const token = TokenResponse.parse(JSON.parse(loginRes.body)).accessToken;

    const value = `tls-value-${randomBytes(8).toString('hex')}`;
    const put = await request(`${base}/v1/secrets/sandbox/tls/KEY`, {
      method: 'PUT',
      ca,
      headers: bearer(token),
      body: { value },
    });
    expect(put.status, put.body).toBe(201);
    const get = await request(`${base}/v1/secrets/sandbox/tls/KEY`, { ca, headers: bearer(token) });
    expect(get.status).toBe(200);
    expect(SecretWithValue.parse(JSON.parse(get.body)).value).toBe(value);
    expect(get.headers['strict-transport-security']).toMatch(/max-age=\d+/);
    expect(get.headers['cache-control']).toBe('no-store');

    const me = await request(`${base}/v1/auth/whoami`, { ca, headers: bearer(token) });
    expect(me.status).toBe(200);
    expect(WhoAmI.parse(JSON.parse(me.body))).toMatchObject({ tenantId: tenant.tenant.id, role: 'admin' });
  });

  it('a client that does not trust the certificate refuses the connection', async () => {
    await expect(request(`${base}/healthz`)).rejects.toThrow(/self[- ]signed/i);
  });

  it('a plain-HTTP request to the HTTPS port fails', async () => {
    const plain = base.replace('https:', 'http:');
    const outcome = await request(`${plain}/healthz`).then(
      (r) => `answered ${r.status}`,
      (err: Error) => `failed: ${err.message}`,
    );
    expect(outcome).toMatch(/^failed: /);
  });

  it('carries the security headers and no CORS headers over HTTPS too', async () => {
    const res = await request(`${base}/healthz`, {
      ca: certOrThrow().cert,
      headers: { origin: 'https://evil.example' },
    });
    expect(res.status).toBe(200);
    expect(res.headers['content-security-policy']).toContain("default-src 'none'");
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers).not.toHaveProperty('x-powered-by');
    expect(res.headers).not.toHaveProperty('access-control-allow-origin');
  });
});

describe('production refuses plain HTTP on a network interface (loadConfig)', () => {
  const prodEnv = (overrides: Record<string, string>) => ({
    NODE_ENV: 'production',
    DATABASE_URL: 'postgres://coffer:pw@db.internal:5432/coffer?sslmode=verify-full',
    COFFER_MASTER_KEYS: `k1:${key32()}`,
    COFFER_JWT_PRIVATE_KEY: inject('jwtPrivateKeyPem'),
    ...overrides,
  });

  it.each(['0.0.0.0', '::', '192.168.1.10', 'coffer.internal', '127.0.0.1.attacker.example'])(
    'HOST=%s without TLS is refused, naming the variables that fix it',
    (host) => {
      const r = loadConfig(prodEnv({ HOST: host }));
      if (r.ok) throw new Error(`HOST=${host} was accepted`);
      expect(r.problems).toHaveLength(1);
      for (const v of ['HOST', 'COFFER_TLS_CERT_FILE', 'COFFER_TLS_KEY_FILE', 'COFFER_TLS_TERMINATED_UPSTREAM']) {
        expect(r.problems[0]).toContain(v);
      }
    },
  );

  it.skipIf(!HAS_OPENSSL)('HOST=0.0.0.0 is accepted with TLS files, and the config carries them', () => {
    const c = certOrThrow();
    const r = loadConfig(
      prodEnv({ HOST: '0.0.0.0', COFFER_TLS_CERT_FILE: c.certFile, COFFER_TLS_KEY_FILE: c.keyFile }),
    );
    if (!r.ok) throw new Error(r.problems.join('\n'));
    expect(r.config.tls?.cert.equals(c.cert)).toBe(true);
  });

  it('HOST=0.0.0.0 is accepted behind a declared TLS-terminating proxy', () => {
    const r = loadConfig(prodEnv({ HOST: '0.0.0.0', COFFER_TLS_TERMINATED_UPSTREAM: 'true' }));
    expect(r.ok).toBe(true);
    expect(r.ok && r.config.tlsTerminatedUpstream).toBe(true);
  });

  it.each(['127.0.0.1', '127.0.0.53', 'localhost', '::1'])('HOST=%s (loopback) is accepted without TLS', (host) => {
    expect(loadConfig(prodEnv({ HOST: host })).ok).toBe(true);
  });
});

describe('the built server as a process', () => {
  it('NODE_ENV=production HOST=0.0.0.0 without TLS exits 1 and names the variables', async () => {
    const out = await runServerToExit({
      NODE_ENV: 'production',
      HOST: '0.0.0.0',
      PORT: String(await freePort()),
      // The shared app role's URL, given so the process never re-passwords it; it does not get that far anyway.
      DATABASE_APP_URL: inject('appDatabaseUrl'),
      COFFER_AUTO_MIGRATE: 'false',
      COFFER_MASTER_KEYS: inject('masterKeys'),
      COFFER_JWT_PRIVATE_KEY: inject('jwtPrivateKeyPem'),
    });
    expect(out.code).toBe(1);
    expect(out.stderr).toContain('1 problem(s)');
    for (const v of ['HOST=0.0.0.0', 'COFFER_TLS_CERT_FILE', 'COFFER_TLS_KEY_FILE', 'COFFER_TLS_TERMINATED_UPSTREAM']) {
      expect(out.stderr).toContain(v);
    }
    expect(out.stdout).not.toContain('listening');
  });

  describe.skipIf(!HAS_OPENSSL)('with TLS files in production', () => {
    let db: ScratchDatabase | undefined;
    let child: ChildProcess | undefined;
    afterAll(async () => {
      child?.kill('SIGKILL');
      await db?.drop();
    });

    it('serves HTTPS on 0.0.0.0, and plain HTTP on that port fails', async () => {
      const c = certOrThrow();
      db = await scratchDatabase();
      const port = await freePort();
      const bootstrapSecret = `tls-proc-${randomBytes(24).toString('base64url')}`;
      let output = '';
      child = spawn(process.execPath, [apiEntry], {
        env: {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          NODE_ENV: 'production',
          HOST: '0.0.0.0',
          PORT: String(port),
          DATABASE_URL: db.ownerUrl,
          DATABASE_APP_URL: db.appUrl,
          COFFER_MASTER_KEYS: inject('masterKeys'),
          COFFER_JWT_PRIVATE_KEY: inject('jwtPrivateKeyPem'),
          COFFER_BOOTSTRAP_SECRET: bootstrapSecret,
          COFFER_DATA_DIR: tmp,
          COFFER_TLS_CERT_FILE: c.certFile,
          COFFER_TLS_KEY_FILE: c.keyFile,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child.stdout?.on('data', (d: Buffer) => {
        output += d.toString();
      });
      child.stderr?.on('data', (d: Buffer) => {
        output += d.toString();
      });
      const base = `https://127.0.0.1:${port}`;
      const deadline = Date.now() + 30_000;
      for (;;) {
        if (child.exitCode !== null) throw new Error(`the server exited with ${child.exitCode}:\n${output}`);
        const ready = await request(`${base}/readyz`, { ca: c.cert }).catch(() => null);
        if (ready?.status === 200) break;
        if (Date.now() > deadline) throw new Error(`not ready over HTTPS in time:\n${output}`);
        await new Promise((r) => setTimeout(r, 150));
      }
      const login = await request(`${base}/v1/auth/token`, {
        method: 'POST',
        ca: c.cert,
        body: { clientId: 'root', clientSecret: bootstrapSecret },
      });
      expect(login.status).toBe(200);
      expect(login.headers['strict-transport-security']).toBeDefined();
      await expect(request(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow();
      expect(output).not.toContain(bootstrapSecret);
    }, 60_000);
  });
});

describe('security headers (helmet) and no CORS by default', () => {
  let t: TestApp;
  let token: string;
  beforeAll(async () => {
    t = await createTestApp();
    token = await rootToken(t.app);
  });
  afterAll(() => t?.close());

  const expectHelmet = (headers: Record<string, unknown>, label: string) => {
    const csp = String(headers['content-security-policy'] ?? '');
    expect(csp, label).toContain("default-src 'none'");
    expect(csp, label).toContain("frame-ancestors 'none'");
    expect(headers['x-content-type-options'], label).toBe('nosniff');
    expect(String(headers['strict-transport-security'] ?? ''), label).toMatch(/max-age=\d{6,}/);
    expect(headers['x-frame-options'], label).toBeDefined();
    expect(headers, label).not.toHaveProperty('x-powered-by');
    for (const h of Object.keys(headers)) expect(h, label).not.toMatch(/^access-control-/);
  };

  it('on success, on a refusal and on an unknown route, even when an Origin header is sent', async () => {
    const origin = { origin: 'https://evil.example' };
    const cases = [
      ['GET /healthz', await t.app.inject({ url: '/healthz', headers: origin }), 200],
      [
        'GET /v1/auth/whoami',
        await t.app.inject({ url: '/v1/auth/whoami', headers: { ...origin, ...bearer(token) } }),
        200,
      ],
      ['GET /v1/secrets without a token', await t.app.inject({ url: '/v1/secrets', headers: origin }), 401],
      ['GET /nowhere', await t.app.inject({ url: '/nowhere', headers: origin }), 404],
    ] as const;
    for (const [label, res, status] of cases) {
      expect(res.statusCode, label).toBe(status);
      expectHelmet(res.headers, label);
    }
  });

  it('a CORS preflight is not answered with any Access-Control header', async () => {
    const res = await t.app.inject({
      method: 'OPTIONS',
      url: '/v1/secrets',
      headers: {
        origin: 'https://evil.example',
        'access-control-request-method': 'GET',
        'access-control-request-headers': 'authorization',
      },
    });
    expect(res.statusCode).toBeGreaterThanOrEqual(400);
    for (const h of Object.keys(res.headers)) expect(h).not.toMatch(/^access-control-/);
  });
});
