import { randomBytes } from 'node:crypto';
import { SecretWithValue } from '@coffer/contracts';
import type pg from 'pg';
import { describe, expect, inject, it } from 'vitest';
import { parseKeyring } from '../../apps/api/src/config.ts';
import { MasterKeyring } from '../../apps/api/src/crypto/keyring.ts';
import { TenantKeyCache } from '../../apps/api/src/crypto/tenant-key-cache.ts';
import { expectEmpty, expectError, expectOk, type SecretsApi } from '../support/secrets.ts';
import { ownerSuite, tenantCtx } from '../support/suite.ts';
import type { TestApp } from '../support/test-app.ts';

let t: TestApp;
let owner: pg.Client;
let root: string;

ownerSuite((s) => {
  ({ t, owner, root } = s);
});

async function seed(api: SecretsApi, path: string, value: string): Promise<void> {
  const res = await api.put(path, { value });
  expect([200, 201]).toContain(res.statusCode);
}

async function secretIdOf(tenantId: string, name: string): Promise<string> {
  const { rows } = await owner.query<{ id: string }>(
    'select id from coffer.secrets where tenant_id = $1 and name = $2',
    [tenantId, name],
  );
  const id = rows[0]?.id;
  if (!id) throw new Error(`no secret ${name}`);
  return id;
}

async function ciphertextOf(secretId: string, version: number): Promise<Buffer | null> {
  const { rows } = await owner.query<{ ciphertext: Buffer | null }>(
    'select ciphertext from coffer.secret_versions where secret_id = $1 and version = $2',
    [secretId, version],
  );
  if (rows.length === 0) throw new Error(`no version ${version}`);
  return rows[0]?.ciphertext ?? null;
}

async function setCiphertext(secretId: string, version: number, ciphertext: Buffer | null): Promise<void> {
  const res = await owner.query(
    'update coffer.secret_versions set ciphertext = $3 where secret_id = $1 and version = $2',
    [secretId, version, ciphertext],
  );
  expect(res.rowCount).toBe(1);
}

/** The tenant's data keys as the service would unwrap them (through the app role), hex by key version. */
async function dataKeysOf(tenantId: string): Promise<(string | null)[]> {
  const problems: string[] = [];
  const keys = parseKeyring(inject('masterKeys'), 'test', problems);
  if (!keys) throw new Error(problems.join('; '));
  return (await new TenantKeyCache(t.db, new MasterKeyring(keys)).get(tenantId)).sqlKeys;
}

/**
 * The request's events, in chain order. A ciphertext pgcrypto refuses (another tenant's) fails the read's statement,
 * so its only event is the error. One that decrypts but is bound to another row is caught by the API after the
 * statement, which has already appended the read's event with the version it decrypted (`served`): the auditor sees
 * that event, then the refusal. The value is never sent.
 */
async function integrityAudited(tenantId: string, requestId: string, served: number | null): Promise<void> {
  const { rows } = await owner.query(
    `select action, outcome, error_code, version from coffer.audit_events where tenant_id = $1 and request_id = $2
     order by seq`,
    [tenantId, requestId],
  );
  const refusal = { action: 'secrets.read', outcome: 'error', error_code: 'integrity_error' };
  expect(rows.map(({ version, ...r }) => (r.outcome === 'error' ? r : { ...r, version }))).toEqual(
    served === null
      ? [refusal]
      : [{ action: 'secrets.read', outcome: 'allowed', error_code: null, version: served }, refusal],
  );
}

describe('at rest', () => {
  it('stores no part of the value in the ciphertext, and only the right data key decrypts it', async () => {
    const { tenant, api } = await tenantCtx(t, root);
    // Long, with repetition, so compression or a plaintext echo would show.
    const value = `sk_live_${randomBytes(24).toString('hex')}${'REPEATED-BLOCK-'.repeat(8)}`;
    await seed(api, 'sandbox/c/KEY', value);
    const id = await secretIdOf(tenant.tenant.id, 'KEY');
    const ciphertext = await ciphertextOf(id, 1);
    if (!ciphertext) throw new Error('no ciphertext');
    const plain = Buffer.from(value, 'utf8');
    expect(ciphertext.includes(plain)).toBe(false);
    for (let i = 0; i + 16 <= plain.length; i++) {
      expect(ciphertext.includes(plain.subarray(i, i + 16)), `slice at ${i}`).toBe(false);
    }
    // No hex or base64 rendering of it either.
    expect(ciphertext.toString('latin1')).not.toContain(plain.toString('hex').slice(0, 32));
    expect(ciphertext.toString('latin1')).not.toContain(plain.toString('base64').slice(0, 24));

    // The tenant's data key decrypts it, and the plaintext starts with the binding line.
    const [dek] = await dataKeysOf(tenant.tenant.id);
    const { rows } = await owner.query<{ plaintext: string }>('select pgp_sym_decrypt($1::bytea, $2) as plaintext', [
      ciphertext,
      dek,
    ]);
    expect(rows[0]?.plaintext).toBe(`coffer:v2:${tenant.tenant.id}:${id}:1:sandbox/c/KEY\n${value}`);

    // Any other key fails, with pgcrypto's "wrong key" error.
    for (const wrong of [randomBytes(32).toString('hex'), 'password', `${dek?.slice(0, -1)}0`]) {
      if (wrong === dek) continue;
      const err = await owner.query('select pgp_sym_decrypt($1::bytea, $2)', [ciphertext, wrong]).then(
        () => null,
        (e: unknown) => e as { code?: string; message?: string },
      );
      expect(err, 'decrypting with a wrong key must fail').not.toBeNull();
      expect(err?.code).toBe('39000');
    }
  });

  it('encrypts each write afresh: equal values give different ciphertexts', async () => {
    const { tenant, api } = await tenantCtx(t, root);
    await seed(api, 'sandbox/c/A', 'same value');
    await seed(api, 'sandbox/c/A', 'same value');
    const id = await secretIdOf(tenant.tenant.id, 'A');
    const [one, two] = [await ciphertextOf(id, 1), await ciphertextOf(id, 2)];
    expect(one).not.toBeNull();
    expect(one?.equals(two as Buffer)).toBe(false);
  });

  it('uses a different data key for each tenant', async () => {
    const a = await tenantCtx(t, root);
    const b = await tenantCtx(t, root);
    const [ka] = await dataKeysOf(a.tenant.tenant.id);
    const [kb] = await dataKeysOf(b.tenant.tenant.id);
    expect(ka).toMatch(/^[0-9a-f]{64}$/);
    expect(ka).not.toBe(kb);
  });
});

describe('ciphertexts are bound to their row', () => {
  it('swapping two secrets’ ciphertexts makes both reads 500 integrity_error, never the other value', async () => {
    const { tenant, api } = await tenantCtx(t, root);
    await seed(api, 'sandbox/c/FIRST', 'first-secret-value');
    await seed(api, 'sandbox/c/SECOND', 'second-secret-value');
    const [first, second] = [await secretIdOf(tenant.tenant.id, 'FIRST'), await secretIdOf(tenant.tenant.id, 'SECOND')];
    const [c1, c2] = [await ciphertextOf(first, 1), await ciphertextOf(second, 1)];
    await setCiphertext(first, 1, c2);
    await setCiphertext(second, 1, c1);

    for (const name of ['FIRST', 'SECOND']) {
      const res = await api.get(`sandbox/c/${name}`);
      const err = expectError(res, 500, 'integrity_error');
      expect(res.body).not.toContain('secret-value');
      await integrityAudited(tenant.tenant.id, err.requestId, 1);
    }
    // The bundle refuses the same way rather than hand out a swapped value.
    const bundle = await api.bundle('sandbox', 'c');
    expectError(bundle, 500, 'integrity_error');
    expect(bundle.body).not.toContain('secret-value');

    // A new version repairs the secret.
    await seed(api, 'sandbox/c/FIRST', 'first-repaired');
    expect(expectOk(await api.get('sandbox/c/FIRST'), 200, SecretWithValue).value).toBe('first-repaired');
    expectError(await api.get('sandbox/c/FIRST', 1), 500, 'integrity_error');
  });

  it('copying version 1’s ciphertext onto version 2 of the same secret is an integrity error', async () => {
    const { tenant, api } = await tenantCtx(t, root);
    await seed(api, 'sandbox/c/ROLLED', 'old-value');
    await seed(api, 'sandbox/c/ROLLED', 'new-value');
    const id = await secretIdOf(tenant.tenant.id, 'ROLLED');
    await setCiphertext(id, 2, await ciphertextOf(id, 1));
    const res = await api.get('sandbox/c/ROLLED');
    const err = expectError(res, 500, 'integrity_error');
    expect(res.body).not.toContain('old-value');
    await integrityAudited(tenant.tenant.id, err.requestId, 2);
    // Version 1 itself is still intact.
    expect(expectOk(await api.get('sandbox/c/ROLLED', 1), 200, SecretWithValue).value).toBe('old-value');
  });

  it('a ciphertext copied from another tenant is an integrity error', async () => {
    const victim = await tenantCtx(t, root);
    const target = await tenantCtx(t, root);
    await seed(victim.api, 'sandbox/c/STOLEN', 'victim-value');
    await seed(target.api, 'sandbox/c/STOLEN', 'target-value');
    const from = await secretIdOf(victim.tenant.tenant.id, 'STOLEN');
    const to = await secretIdOf(target.tenant.tenant.id, 'STOLEN');
    await setCiphertext(to, 1, await ciphertextOf(from, 1));
    const res = await target.api.get('sandbox/c/STOLEN');
    const err = expectError(res, 500, 'integrity_error');
    expect(res.body).not.toContain('victim-value');
    expect(err.message).not.toMatch(/pgp|wrong key|corrupt/i);
    await integrityAudited(target.tenant.tenant.id, err.requestId, null);
    expect(expectOk(await victim.api.get('sandbox/c/STOLEN'), 200, SecretWithValue).value).toBe('victim-value');
  });

  it('a corrupted ciphertext is an integrity error, not a crash', async () => {
    const { tenant, api } = await tenantCtx(t, root);
    await seed(api, 'sandbox/c/FLIPPED', 'flipped-value');
    const id = await secretIdOf(tenant.tenant.id, 'FLIPPED');
    const c = await ciphertextOf(id, 1);
    if (!c) throw new Error('no ciphertext');
    const flipped = Buffer.from(c);
    const at = flipped.length - 5;
    flipped[at] = (flipped[at] ?? 0) ^ 0x01;
    await setCiphertext(id, 1, flipped);
    const res = await api.get('sandbox/c/FLIPPED');
    expectError(res, 500, 'integrity_error');
    expect(res.body).not.toContain('flipped-value');
  });
});

describe('erasure', () => {
  it('destroy sets the version’s ciphertext to NULL and leaves the others', async () => {
    const { tenant, api } = await tenantCtx(t, root);
    for (const v of ['d-1', 'd-2', 'd-3']) await seed(api, 'sandbox/c/D', v);
    const id = await secretIdOf(tenant.tenant.id, 'D');
    expectEmpty(await api.destroy('sandbox/c/D', 1));
    expect(await ciphertextOf(id, 1)).toBeNull();
    expect(await ciphertextOf(id, 2)).toBeInstanceOf(Buffer);
    expect(await ciphertextOf(id, 3)).toBeInstanceOf(Buffer);
    const { rows } = await owner.query<{ destroyed_at: Date | null }>(
      'select destroyed_at from coffer.secret_versions where secret_id = $1 and version = 1',
      [id],
    );
    expect(rows[0]?.destroyed_at).toBeInstanceOf(Date);
    expectError(await api.get('sandbox/c/D', 1), 410, 'gone');
  });

  it('purge removes every ciphertext row of the secret, and only those', async () => {
    const { tenant, api } = await tenantCtx(t, root);
    for (const v of ['p-1', 'p-2']) await seed(api, 'sandbox/c/P', v);
    await seed(api, 'sandbox/c/KEEP', 'k');
    const id = await secretIdOf(tenant.tenant.id, 'P');
    const count = async () =>
      (
        await owner.query<{ mine: string; all: string }>(
          'select count(*) filter (where secret_id = $2) as mine, count(*) as all from coffer.secret_versions where tenant_id = $1',
          [tenant.tenant.id, id],
        )
      ).rows[0];
    expect(await count()).toEqual({ mine: '2', all: '3' });
    expectEmpty(await api.remove('sandbox/c/P', true));
    expect(await count()).toEqual({ mine: '0', all: '1' });
  });
});
