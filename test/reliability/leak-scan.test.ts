import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseKeyring } from '../../apps/api/src/config.ts';
import { dataKeyContext, MasterKeyring } from '../../apps/api/src/crypto/keyring.ts';
import { type Api, type Cluster, call, clusterSuite, type Keys, tenantOn, token } from './harness.ts';
import { recordOutcome } from './results.ts';

let cluster: Cluster;
let api: Api;
let keys: Keys;
clusterSuite(
  {
    // Everything PostgreSQL can be made to log, so that the scan would find a value or key that reached it.
    postgresFlags: [
      '-c',
      'log_statement=all',
      '-c',
      'log_min_duration_statement=0',
      '-c',
      'log_parameter_max_length=-1',
      '-c',
      'log_parameter_max_length_on_error=-1',
      '-c',
      'log_min_error_statement=info',
    ],
    apis: [{ LOG_LEVEL: 'debug' }],
  },
  (s) => {
    ({ cluster, keys } = s);
    [api] = s.apis;
  },
);

describe('leak scan with PostgreSQL statement logging on for the whole cluster', () => {
  it('finds the canary secret, canary token and data key in no application log, server log, error body or audit column', async () => {
    const t = await tenantOn(api, keys);
    const canary = `CANARY${randomBytes(12).toString('hex')}`;
    const bodies: string[] = [];
    const hit = async (method: string, path: string, body?: unknown, tok = t.adminToken) => {
      const r = await call(api.base, method, path, { token: tok, ...(body !== undefined ? { body } : {}) });
      if (r.status >= 400) bodies.push(JSON.stringify(r.body));
      return r;
    };
    await hit('PUT', '/v1/secrets/sandbox/leak/CANARY', { value: canary, ifVersion: 0 });
    await hit('GET', '/v1/secrets/sandbox/leak/CANARY');
    await hit('GET', '/v1/bundles/sandbox/leak');
    await hit('PUT', '/v1/secrets/sandbox/leak/CANARY', { value: canary, ifVersion: 7 }); // 409
    await hit('PUT', '/v1/secrets/sandbox/leak/UUID', { value: canary, format: 'uuid' }); // 422
    await hit('PUT', '/v1/secrets/sandbox/leak/BIG', { value: canary.repeat(3000) }); // 413
    await hit('POST', '/v1/secrets/sandbox/leak/CANARY/rotate', { value: `${canary}-2` });
    // A check decrypts the value and matches it in PostgreSQL (a custom pattern): its answer is scanned too.
    const checked = await hit('POST', '/v1/check', {
      secrets: [
        { path: 'sandbox/leak/CANARY', format: { pattern: '^[0-9]+$' } },
        { path: 'sandbox/leak/UUID', format: 'uuid', maxAgeDays: 1 },
      ],
    });
    expect(checked.status).toBe(200);
    bodies.push(JSON.stringify(checked.body));
    await hit('POST', '/v1/bundles/sandbox/leak', { set: { CANARY: { value: canary, ifVersion: 1 } } }); // 409
    await hit('POST', '/v1/keys/rotate');
    await hit('GET', '/v1/secrets/sandbox/leak/CANARY?version=previous');
    await hit('GET', '/v1/audit/export');
    const forged = `${t.adminToken.slice(0, -4)}AAAA`;
    await hit('GET', '/v1/secrets/sandbox/leak/CANARY', undefined, forged); // 401 with a canary token
    const clientSecretToken = await token(api.base, t.admin.clientId, t.admin.clientSecret);

    // Control: a statement of another role, with a parameter, is logged with it (so the scan can see leaks).
    const control = `CONTROL${randomBytes(8).toString('hex')}`;
    await cluster.query('select length($1::text)', [control]);
    // Give the database a moment to flush its log lines.
    await new Promise((r) => setTimeout(r, 300));
    const keyring = new MasterKeyring(parseKeyring(keys.masterKeys, 'test', []) ?? []);
    const dekRows = await cluster.query<{ version: number; wrapped_key: Buffer; master_key_id: string }>(
      `select version, wrapped_key, master_key_id from coffer.tenant_keys where tenant_id = $1 and length(wrapped_key) > 0`,
      [t.tenantId],
    );
    const deks = dekRows.map((r) =>
      keyring
        .unwrap({ wrapped: r.wrapped_key, masterKeyId: r.master_key_id }, dataKeyContext(t.tenantId, r.version))
        .toString('hex'),
    );
    const auditText = JSON.stringify(
      await cluster.query(`select * from coffer.audit_events where tenant_id = $1`, [t.tenantId]),
    );
    const places: Record<string, string> = {
      'application log': api.output(),
      'PostgreSQL server log': cluster.logs.join('\n'),
      'error bodies': bodies.join('\n'),
      'audit rows': auditText,
    };
    const needles: Record<string, string> = {
      'canary secret': canary,
      'access token': t.adminToken,
      'another access token': clientSecretToken,
      'forged token': forged,
      'client secret': t.admin.clientSecret,
      'root secret': keys.rootSecret,
      ...Object.fromEntries(deks.map((d, i) => [`data key ${i + 1}`, d])),
    };
    const leaks: string[] = [];
    for (const [place, text] of Object.entries(places)) {
      for (const [what, needle] of Object.entries(needles))
        if (text.includes(needle)) leaks.push(`${what} in ${place}`);
    }
    expect(leaks).toEqual([]);
    // The logging really is on: the owner's statements (migrations) are in the server log.
    expect(places['PostgreSQL server log']).toMatch(/statement: .*coffer/i);
    expect(places['PostgreSQL server log']).toContain(control);
    recordOutcome('leak-scan', {
      placesScanned: Object.keys(places).length,
      secretsScanned: Object.keys(needles).length,
      leaks: leaks.length,
    });
  });
});
