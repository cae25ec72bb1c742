import { spawn } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type ConfigResult, loadConfig } from '../../apps/api/src/config.ts';
import { apiEntry } from '../support/build.ts';

const key32 = () => randomBytes(32).toString('base64');
const ed25519Pem = () => generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
const rsaPem = () =>
  generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();

/** A production environment that parses cleanly; each test breaks one thing. */
function prodEnv(overrides: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return {
    NODE_ENV: 'production',
    HOST: '127.0.0.1',
    DATABASE_URL: 'postgres://coffer:pw@db.internal:5432/coffer?sslmode=verify-full',
    COFFER_MASTER_KEYS: `k1:${key32()}`,
    COFFER_JWT_PRIVATE_KEY: ed25519Pem(),
    ...overrides,
  };
}

function problemsOf(r: ConfigResult): string[] {
  if (r.ok) throw new Error('expected the configuration to be refused, but it parsed');
  return r.problems;
}

/** Exactly one problem, and it names `variable`. */
function expectOneProblemNaming(r: ConfigResult, variable: string): string {
  const problems = problemsOf(r);
  expect(problems).toHaveLength(1);
  expect(problems[0]).toContain(variable);
  return problems[0] as string;
}

const tmp = mkdtempSync(path.join(os.tmpdir(), 'coffer-config-test-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
function tmpFile(name: string, content: string): string {
  const file = path.join(tmp, `${name}-${randomBytes(4).toString('hex')}`);
  writeFileSync(file, content, { mode: 0o600 });
  return file;
}

describe('loadConfig in production', () => {
  it('accepts a complete production configuration (baseline for the cases below)', () => {
    const r = loadConfig(prodEnv());
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.config.env).toBe('production');
    expect(r.config.masterKeys?.map((k) => k.id)).toEqual(['k1']);
    expect(r.config.masterKeys?.[0]?.key.length).toBe(32);
    expect(r.config.jwtPrivateKey?.asymmetricKeyType).toBe('ed25519');
  });

  it('refuses a missing COFFER_MASTER_KEYS and says how to make one', () => {
    const p = expectOneProblemNaming(loadConfig(prodEnv({ COFFER_MASTER_KEYS: undefined })), 'COFFER_MASTER_KEYS');
    expect(p).toContain('openssl rand');
  });

  it('refuses a 16-byte master key', () => {
    const p = expectOneProblemNaming(
      loadConfig(prodEnv({ COFFER_MASTER_KEYS: `k1:${randomBytes(16).toString('base64')}` })),
      'COFFER_MASTER_KEYS',
    );
    expect(p).toContain('32 bytes');
  });

  it.each([
    ['no key id', key32()],
    ['no colon at all', 'justsomewords'],
    ['a key that is not base64', 'k1:not*base64*at*all!!'],
    ['an id with spaces', `my key:${key32()}`],
    ['an empty keyring', ' , '],
  ])('refuses a malformed keyring entry (%s)', (_name, keyring) => {
    expectOneProblemNaming(loadConfig(prodEnv({ COFFER_MASTER_KEYS: keyring })), 'COFFER_MASTER_KEYS');
  });

  it('refuses a duplicate key id', () => {
    const p = expectOneProblemNaming(
      loadConfig(prodEnv({ COFFER_MASTER_KEYS: `k1:${key32()},k1:${key32()}` })),
      'COFFER_MASTER_KEYS',
    );
    expect(p).toContain('twice');
  });

  it('accepts a keyring of several keys, first one active', () => {
    const r = loadConfig(prodEnv({ COFFER_MASTER_KEYS: `new:${key32()},old:${key32()}` }));
    expect(r.ok && r.config.masterKeys?.map((k) => k.id)).toEqual(['new', 'old']);
  });

  it('refuses a missing COFFER_JWT_PRIVATE_KEY', () => {
    const p = expectOneProblemNaming(
      loadConfig(prodEnv({ COFFER_JWT_PRIVATE_KEY: undefined })),
      'COFFER_JWT_PRIVATE_KEY',
    );
    expect(p).toContain('ed25519');
  });

  it('refuses an RSA signing key: only Ed25519 is accepted', () => {
    const p = expectOneProblemNaming(
      loadConfig(prodEnv({ COFFER_JWT_PRIVATE_KEY: rsaPem() })),
      'COFFER_JWT_PRIVATE_KEY',
    );
    expect(p).toContain('Ed25519');
    expect(p).toContain('rsa');
  });

  it('refuses a signing key that is not a PEM key at all', () => {
    expectOneProblemNaming(
      loadConfig(prodEnv({ COFFER_JWT_PRIVATE_KEY: 'not a key, just garbage' })),
      'COFFER_JWT_PRIVATE_KEY',
    );
  });

  it('refuses an Ed25519 public key where the private key belongs', () => {
    const pub = generateKeyPairSync('ed25519').publicKey.export({ format: 'pem', type: 'spki' }).toString();
    expectOneProblemNaming(loadConfig(prodEnv({ COFFER_JWT_PRIVATE_KEY: pub })), 'COFFER_JWT_PRIVATE_KEY');
  });

  it('refuses a missing DATABASE_URL (the embedded database is for development)', () => {
    expectOneProblemNaming(loadConfig(prodEnv({ DATABASE_URL: undefined })), 'DATABASE_URL');
  });

  it('refuses a DATABASE_URL that is not a postgres URL', () => {
    expectOneProblemNaming(loadConfig(prodEnv({ DATABASE_URL: 'mysql://u:p@h/db' })), 'DATABASE_URL');
  });

  it('refuses a COFFER_BOOTSTRAP_SECRET shorter than 24 characters, and accepts a long one', () => {
    expectOneProblemNaming(loadConfig(prodEnv({ COFFER_BOOTSTRAP_SECRET: 'short-secret' })), 'COFFER_BOOTSTRAP_SECRET');
    const r = loadConfig(prodEnv({ COFFER_BOOTSTRAP_SECRET: 'x'.repeat(24) }));
    expect(r.ok && r.config.bootstrapSecret).toBe('x'.repeat(24));
  });

  it.each(['65536', '-1', '80.5', 'http'])('refuses PORT=%s', (port) => {
    expectOneProblemNaming(loadConfig(prodEnv({ PORT: port })), 'PORT');
  });

  it('accepts PORT at both ends of its range', () => {
    expect(loadConfig(prodEnv({ PORT: '0' })).ok).toBe(true);
    expect(loadConfig(prodEnv({ PORT: '65535' })).ok).toBe(true);
  });

  it('refuses a TLS certificate without its key, and a key without its certificate', () => {
    const cert = tmpFile('cert.pem', 'cert');
    expectOneProblemNaming(loadConfig(prodEnv({ COFFER_TLS_CERT_FILE: cert })), 'COFFER_TLS_KEY_FILE');
    expectOneProblemNaming(loadConfig(prodEnv({ COFFER_TLS_KEY_FILE: cert })), 'COFFER_TLS_CERT_FILE');
  });

  it('reads the TLS files when both are set', () => {
    const cert = tmpFile('cert.pem', 'CERT');
    const key = tmpFile('key.pem', 'KEY');
    const r = loadConfig(prodEnv({ HOST: '0.0.0.0', COFFER_TLS_CERT_FILE: cert, COFFER_TLS_KEY_FILE: key }));
    expect(r.ok && r.config.tls?.cert.toString()).toBe('CERT');
  });

  it('refuses plain HTTP on 0.0.0.0 in production, and names the ways out', () => {
    const p = expectOneProblemNaming(loadConfig(prodEnv({ HOST: '0.0.0.0' })), 'HOST');
    expect(p).toContain('COFFER_TLS_TERMINATED_UPSTREAM');
    expect(p).toContain('COFFER_TLS_CERT_FILE');
  });

  it('accepts plain HTTP on 0.0.0.0 behind a declared TLS-terminating proxy', () => {
    const r = loadConfig(prodEnv({ HOST: '0.0.0.0', COFFER_TLS_TERMINATED_UPSTREAM: 'true' }));
    expect(r.ok && r.config.tlsTerminatedUpstream).toBe(true);
  });

  it('accepts plain HTTP on loopback in production', () => {
    expect(loadConfig(prodEnv({ HOST: 'localhost' })).ok).toBe(true);
    expect(loadConfig(prodEnv({ HOST: '::1' })).ok).toBe(true);
  });

  it('reports every problem at once', () => {
    const problems = problemsOf(
      loadConfig(
        prodEnv({
          COFFER_MASTER_KEYS: undefined,
          COFFER_JWT_PRIVATE_KEY: rsaPem(),
          DATABASE_URL: undefined,
          COFFER_BOOTSTRAP_SECRET: 'short',
          COFFER_TLS_CERT_FILE: tmpFile('cert.pem', 'c'),
          HOST: '0.0.0.0',
        }),
      ),
    );
    for (const variable of [
      'COFFER_MASTER_KEYS',
      'COFFER_JWT_PRIVATE_KEY',
      'DATABASE_URL',
      'COFFER_BOOTSTRAP_SECRET',
      'COFFER_TLS_KEY_FILE',
      'HOST',
    ]) {
      expect(
        problems.some((p) => p.includes(variable)),
        `a problem names ${variable}`,
      ).toBe(true);
    }
    expect(problems).toHaveLength(6);
  });

  // Regression test: this was a bug the first version of this suite found.
  it('reports a malformed PORT together with a missing keyring', () => {
    const problems = problemsOf(loadConfig(prodEnv({ PORT: '70000', COFFER_MASTER_KEYS: undefined })));
    expect(problems.some((p) => p.startsWith('PORT'))).toBe(true);
    expect(problems.some((p) => p.includes('COFFER_MASTER_KEYS'))).toBe(true);
  });

  it('never repeats a bad value in a problem message', () => {
    const marker = 'ZZdistinctiveZZ';
    const keyMarker = Buffer.from(`${marker}${marker}`).toString('base64'); // 30 bytes: wrong length
    const cases: Record<string, string | undefined>[] = [
      { COFFER_MASTER_KEYS: `k1:${keyMarker}` },
      { COFFER_MASTER_KEYS: `${marker}` },
      { COFFER_MASTER_KEYS: `k1:${marker}!!` },
      { COFFER_MASTER_KEYS: `k1:${key32()},k2:${marker}` },
      { COFFER_JWT_PRIVATE_KEY: `-----BEGIN PRIVATE KEY-----\n${marker}\n-----END PRIVATE KEY-----` },
      { COFFER_JWT_PRIVATE_KEY: marker },
      { COFFER_BOOTSTRAP_SECRET: marker },
      { DATABASE_URL: `mysql://coffer:${marker}@db/coffer` },
      { DATABASE_APP_URL: `http://coffer:${marker}@db/coffer` },
      { PORT: marker },
      { LOG_LEVEL: marker },
      { NODE_ENV: marker },
      { COFFER_TLS_TERMINATED_UPSTREAM: marker },
    ];
    for (const overrides of cases) {
      const problems = problemsOf(loadConfig(prodEnv(overrides)));
      const variable = Object.keys(overrides)[0] as string;
      expect(problems.join('\n'), variable).toContain(variable);
      expect(problems.join('\n'), variable).not.toContain(marker);
      expect(problems.join('\n'), variable).not.toContain(keyMarker);
    }
  });
});

describe('loadConfig from *_FILE variables', () => {
  it('reads the keyring and the signing key from files', () => {
    const keyring = `a:${key32()}\nb:${key32()}\n`;
    const r = loadConfig(
      prodEnv({
        COFFER_MASTER_KEYS: undefined,
        COFFER_JWT_PRIVATE_KEY: undefined,
        COFFER_MASTER_KEYS_FILE: tmpFile('keyring', keyring),
        COFFER_JWT_PRIVATE_KEY_FILE: tmpFile('jwt.pem', ed25519Pem()),
      }),
    );
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.config.masterKeys?.map((k) => k.id)).toEqual(['a', 'b']);
    expect(r.config.jwtPrivateKey?.asymmetricKeyType).toBe('ed25519');
  });

  it('names the _FILE variable when the file holds a bad keyring, without its content', () => {
    const marker = 'QQfilecontentQQ';
    const p = expectOneProblemNaming(
      loadConfig(
        prodEnv({ COFFER_MASTER_KEYS: undefined, COFFER_MASTER_KEYS_FILE: tmpFile('keyring', `k1:${marker}`) }),
      ),
      'COFFER_MASTER_KEYS_FILE',
    );
    expect(p).not.toContain(marker);
  });

  it('names the _FILE variable when the file cannot be read', () => {
    expectOneProblemNaming(
      loadConfig(prodEnv({ COFFER_JWT_PRIVATE_KEY: undefined, COFFER_JWT_PRIVATE_KEY_FILE: path.join(tmp, 'nope') })),
      'COFFER_JWT_PRIVATE_KEY_FILE',
    );
  });

  it('refuses a variable and its _FILE twin set together', () => {
    expectOneProblemNaming(
      loadConfig(prodEnv({ COFFER_MASTER_KEYS_FILE: tmpFile('keyring', `k1:${key32()}`) })),
      'COFFER_MASTER_KEYS_FILE',
    );
  });

  it('reads previous JWT public keys from a file and refuses a non-Ed25519 one', () => {
    const pub = generateKeyPairSync('ed25519').publicKey.export({ format: 'pem', type: 'spki' }).toString();
    const ok = loadConfig(prodEnv({ COFFER_JWT_PREVIOUS_PUBLIC_KEYS_FILE: tmpFile('prev.pem', pub) }));
    expect(ok.ok && ok.config.jwtPreviousPublicKeys).toHaveLength(1);
    const rsaPub = generateKeyPairSync('rsa', { modulusLength: 2048 })
      .publicKey.export({ format: 'pem', type: 'spki' })
      .toString();
    expectOneProblemNaming(
      loadConfig(prodEnv({ COFFER_JWT_PREVIOUS_PUBLIC_KEYS_FILE: tmpFile('prev.pem', rsaPub) })),
      'COFFER_JWT_PREVIOUS_PUBLIC_KEYS_FILE',
    );
  });
});

describe('loadConfig in development', () => {
  it('parses with no keys and no database: keys are null until main.ts generates them', () => {
    const r = loadConfig({});
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.config.env).toBe('development');
    expect(r.config.masterKeys).toBeNull();
    expect(r.config.jwtPrivateKey).toBeNull();
    expect(r.config.databaseUrl).toBeNull();
    expect(r.config.host).toBe('127.0.0.1');
    expect(r.config.port).toBe(7400);
    expect(r.config.tokenTtlSeconds).toBe(900);
  });

  it('still refuses a malformed key that was given', () => {
    expectOneProblemNaming(loadConfig({ COFFER_MASTER_KEYS: 'k1:short' }), 'COFFER_MASTER_KEYS');
  });

  it('reads the audit witness file and the checkpoint age (given in seconds), and bounds the age', () => {
    const r = loadConfig({});
    expect(r.ok && r.config.auditWitnessFile).toBeNull();
    expect(r.ok && r.config.auditCheckpointMaxAgeMs).toBe(86_400_000);
    const set = loadConfig({ COFFER_AUDIT_WITNESS_FILE: '/tmp/w.jsonl', COFFER_AUDIT_CHECKPOINT_MAX_AGE_S: '3600' });
    expect(set.ok && set.config.auditWitnessFile).toBe('/tmp/w.jsonl');
    expect(set.ok && set.config.auditCheckpointMaxAgeMs).toBe(3_600_000);
    expectOneProblemNaming(
      loadConfig({ COFFER_AUDIT_CHECKPOINT_MAX_AGE_S: '59' }),
      'COFFER_AUDIT_CHECKPOINT_MAX_AGE_S',
    );
  });
});

describe('the process refuses to start on a bad configuration', () => {
  it('exits 1 and names COFFER_MASTER_KEYS on stderr, without the bad value', async () => {
    const badKey = `k1:${Buffer.from('WWprocessmarkerWW').toString('base64')}`;
    const child = spawn(process.execPath, [apiEntry], {
      env: {
        PATH: process.env.PATH,
        NODE_ENV: 'production',
        HOST: '127.0.0.1',
        DATABASE_URL: 'postgres://coffer:pw@127.0.0.1:1/coffer',
        COFFER_MASTER_KEYS: badKey,
        COFFER_JWT_PRIVATE_KEY: ed25519Pem(),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    expect(code).toBe(1);
    expect(stderr).toContain('COFFER_MASTER_KEYS');
    expect(stderr).toContain('32 bytes');
    expect(`${stdout}${stderr}`).not.toContain('WWprocessmarkerWW');
    expect(`${stdout}${stderr}`).not.toContain(badKey.slice(3));
  });
});

describe('the database connection in production', () => {
  const plain = 'postgres://coffer:pw@db.internal:5432/coffer';
  it('plaintext database: a DATABASE_URL to another host without TLS is refused, naming COFFER_DATABASE_ALLOW_PLAINTEXT', () => {
    const problem = expectOneProblemNaming(loadConfig(prodEnv({ DATABASE_URL: plain })), 'DATABASE_URL');
    expect(problem).toContain('db.internal');
    expect(problem).toContain('sslmode=verify-full');
    expect(problem).toContain('COFFER_DATABASE_ALLOW_PLAINTEXT=true');
    expectOneProblemNaming(
      loadConfig(prodEnv({ DATABASE_APP_URL: 'postgres://coffer_app:pw@10.0.0.5/coffer?sslmode=prefer' })),
      'DATABASE_APP_URL',
    );
  });

  it('accepts TLS, loopback, a unix socket, or the explicit setting', () => {
    for (const url of [
      `${plain}?sslmode=verify-full`,
      `${plain}?sslmode=require`,
      `${plain}?sslmode=verify-ca`,
      `${plain}?ssl=true`,
      'postgres://coffer:pw@127.0.0.1:5432/coffer',
      'postgres://coffer:pw@localhost/coffer',
      'postgres://coffer:pw@[::1]:5432/coffer',
      'postgres://coffer:pw@/coffer?host=/var/run/postgresql',
    ]) {
      const r = loadConfig(prodEnv({ DATABASE_URL: url }));
      expect({ url, ok: r.ok, problems: r.ok ? [] : r.problems }).toEqual({ url, ok: true, problems: [] });
    }
    expect(loadConfig(prodEnv({ DATABASE_URL: plain, COFFER_DATABASE_ALLOW_PLAINTEXT: 'true' })).ok).toBe(true);
    // Outside production nothing changes.
    expect(loadConfig(prodEnv({ NODE_ENV: 'development', DATABASE_URL: plain })).ok).toBe(true);
  });
});
