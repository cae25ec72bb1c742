import { CreatedDeployment, RevokedDeployment, SecretWithValue } from '@coffer/contracts';
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { createIdentity } from '../support/factories.ts';
import { expectError, expectOk, sender } from '../support/secrets.ts';
import { leaksIn } from '../support/security.ts';
import { ownerSuite, tenantCtx } from '../support/suite.ts';
import type { TestApp } from '../support/test-app.ts';

let t: TestApp;
let owner: pg.Client;
let root: string;
ownerSuite((s) => ({ t, owner, root } = s));

/**
 * A generated value is shown once, in the answer to the request that made it, and nowhere else: no log line, no audit
 * row, no webhook payload, no deployment record, no error. Every path that makes or handles one runs here, then
 * everything the service wrote is scanned for every value it made.
 */
describe('leak scan over deployments and generated values', () => {
  it('no generated value in any log line, audit row, webhook payload, deployment row or error body', async () => {
    const { tenant, tid } = await tenantCtx(t, root);
    const admin = sender(t.app, tenant.adminToken);
    const hook = await admin('POST', '/v1/webhooks', {
      url: 'http://127.0.0.1:9/leak-hook',
      events: ['secret.written', 'secret.rotated'],
    });
    expect(hook.statusCode).toBe(201);
    const S = '/v1/secrets/sandbox/leak';
    await admin('PUT', `${S}/SESSION_KEY`, {
      value: 'initial-session-key-value',
      class: 'service',
      strategy: { local: { action: 'generate', generator: { length: 40, charset: 'ascii-printable' } } },
    });
    await admin('PUT', `${S}/HEX_TOKEN`, {
      value: 'abcdef0123456789',
      class: 'service',
      format: 'hex',
      strategy: { local: { action: 'generate', generator: { length: 32, charset: 'hex' } } },
    });
    await admin('PUT', `${S}/DATABASE_URL`, { value: 'postgres://u:p@db.internal/leak', class: 'infrastructure' });
    await admin('PUT', `${S}/USER_KEY`, { value: 'user-key-value-123', class: 'user' });

    const generated: string[] = [];
    const bodies: string[] = [];
    const runner = await createIdentity(t.app, tenant.adminToken, {
      role: 'service',
      policies: [{ path: 'sandbox/leak/*', capabilities: ['read'] }],
    });
    const run = sender(t.app, runner.token);
    const made: CreatedDeployment[] = [];
    for (let i = 0; i < 3; i++) {
      const d = expectOk(
        await admin('POST', '/v1/deployments', {
          name: `leak-${i}`,
          environment: 'default',
          tier: 'local',
          bundles: ['sandbox/leak'],
        }),
        201,
        CreatedDeployment,
      );
      made.push(d);
      generated.push(...Object.values(d.generated));
      await run('GET', `/v1/bundles/sandbox/leak?deployment=${d.id}`);
      await admin('GET', `/v1/deployments/${d.id}`);
    }
    expect(generated).toHaveLength(6);
    expect(new Set(generated).size).toBe(6);

    // Failures on the way: a format the generator cannot meet (its value is made and refused), a conflict.
    await admin('PATCH', `${S}/HEX_TOKEN`, {
      strategy: { local: { action: 'generate', generator: { length: 32, charset: 'alphanumeric' } } },
    });
    const refused = expectError(
      await admin('POST', '/v1/deployments', {
        name: 'refused',
        environment: 'default',
        tier: 'local',
        bundles: ['sandbox/leak'],
      }),
      422,
      'unprocessable',
    );
    bodies.push(JSON.stringify(refused));
    await admin('PATCH', `${S}/HEX_TOKEN`, {
      strategy: { local: { action: 'generate', generator: { length: 32, charset: 'hex' } } },
    });

    // The revocation makes new values too: they are never answered, only stored.
    const first = made[0] as CreatedDeployment;
    const last = made[2] as CreatedDeployment;
    expectOk(await admin('POST', `/v1/deployments/${last.id}/revoke`, { notes: 'leak scan' }), 200, RevokedDeployment);
    bodies.push(JSON.stringify(expectError(await admin('POST', `/v1/deployments/${last.id}/revoke`), 409, 'conflict')));
    bodies.push(
      JSON.stringify(expectError(await run('GET', `/v1/bundles/sandbox/leak?deployment=${last.id}`), 410, 'gone')),
    );
    for (const name of ['SESSION_KEY', 'HEX_TOKEN']) {
      generated.push(expectOk(await admin('GET', `${S}/${name}`), 200, SecretWithValue).value);
    }
    // A deployment's generated version, revoked, answers 410 without its value.
    bodies.push(JSON.stringify(expectError(await admin('GET', `${S}/SESSION_KEY?version=4`), 410, 'gone')));
    bodies.push(
      JSON.stringify(
        expectError(await admin('POST', `${S}/SESSION_KEY/versions/2/revoke`, {}), 409, 'consumers_pending'),
      ),
    );
    await admin('GET', `${S}/SESSION_KEY/consumers`);
    await admin('GET', `${S}/SESSION_KEY/rotation-status`);
    await admin('GET', '/v1/inventory');
    await admin('GET', '/v1/rotation/log');
    await admin('GET', `/v1/deployments?secret=sandbox/leak/SESSION_KEY`);
    expect(first.id).not.toBe(last.id);

    const scan = async (sql: string) => (await owner.query<{ j: string }>(sql, [tid])).rows.map((r) => r.j).join('\n');
    const places: Record<string, string> = {
      'log lines': t.logs.join('\n'),
      'audit rows': await scan('select row_to_json(e)::text as j from coffer.audit_events e where tenant_id = $1'),
      'webhook payloads': await scan('select payload::text as j from coffer.webhook_deliveries where tenant_id = $1'),
      deployments: await scan('select row_to_json(d)::text as j from coffer.deployments d where tenant_id = $1'),
      'deployment items': await scan(
        'select row_to_json(i)::text as j from coffer.deployment_items i where tenant_id = $1',
      ),
      'deployment receipts': await scan(
        'select row_to_json(r)::text as j from coffer.deployment_receipts r where tenant_id = $1',
      ),
      'error bodies': bodies.join('\n'),
    };
    // The scan sees what it looks for: the audit rows name the deployments, and the logs are there.
    expect(places['audit rows']).toContain(first.id);
    expect(t.logs.length).toBeGreaterThan(0);
    for (const [where, text] of Object.entries(places)) expect(leaksIn(text, generated), where).toEqual([]);
    // And no generated value is stored in the clear: every version is ciphertext.
    const clear = await scan(
      `select encode(ciphertext, 'escape') as j from coffer.secret_versions where tenant_id = $1 and ciphertext is not null`,
    );
    expect(leaksIn(clear, generated)).toEqual([]);
  });
});
