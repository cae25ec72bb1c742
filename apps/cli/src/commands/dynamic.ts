import { readFileSync } from 'node:fs';
import { CreatePostgresBackendRequest, type Lease, LeaseState, type PostgresBackend } from '@coffer/contracts';
import type { Command } from 'commander';
import { connect } from '../context.ts';
import { json, note, out, styleFor, table, usageError } from '../output.ts';
import { examples, globalsOf } from './common.ts';

/** `90`, `90s`, `15m`, `12h`, `7d`: a number of seconds. */
function ttlArg(name: string) {
  return (raw: string): number => {
    const m = /^(\d+)(s|m|h|d)?$/.exec(raw);
    if (!m) throw usageError(`${name} must be seconds or a duration like 15m, 12h or 7d, not "${raw}"`);
    const unit = { s: 1, m: 60, h: 3600, d: 86_400 }[(m[2] ?? 's') as 's' | 'm' | 'h' | 'd'];
    return Number(m[1]) * unit;
  };
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

function printBackend(b: PostgresBackend): void {
  const s = styleFor(process.stdout);
  out(
    table([
      [s.bold('name'), b.name],
      [s.bold('connection secret'), b.connectionSecret],
      [s.bold('ttl'), `${b.defaultTtlSeconds}s (at most ${b.maxTtlSeconds}s)`],
      [s.bold('username'), b.usernameTemplate],
      [s.bold('active leases'), String(b.activeLeases)],
      ...b.creationStatements.map((st, i) => [i === 0 ? s.bold('creation') : '', st]),
      ...b.revocationStatements.map((st, i) => [i === 0 ? s.bold('revocation') : '', st]),
      ...b.renewStatements.map((st, i) => [i === 0 ? s.bold('renew') : '', st]),
    ]),
  );
}

function printLeases(items: Lease[]): void {
  const s = styleFor(process.stdout);
  const colour = (state: Lease['state']) =>
    state === 'active' ? s.green(state) : state === 'revoke_failed' ? s.red(state) : state;
  out(
    table(
      items.map((l) => [l.id, l.backend, l.username, l.identityName, colour(l.state), l.expiresAt, l.lastError ?? '']),
      ['LEASE', 'BACKEND', 'USERNAME', 'IDENTITY', 'STATE', 'EXPIRES', 'LAST ERROR'].map(s.bold),
    ),
  );
}

interface CreateOptions {
  connectionSecret?: string;
  creation?: string[];
  revocation?: string[];
  renew?: string[];
  defaultTtl?: number;
  maxTtl?: number;
  usernameTemplate?: string;
  fromFile?: string;
  json?: boolean;
}

/** The request body from the options, or from a JSON file (whose fields the options override). */
function backendBody(name: string, o: CreateOptions): CreatePostgresBackendRequest {
  let base: Record<string, unknown> = {};
  if (o.fromFile) {
    try {
      base = JSON.parse(readFileSync(o.fromFile === '-' ? 0 : o.fromFile, 'utf8')) as Record<string, unknown>;
    } catch (e) {
      throw usageError(`cannot read ${o.fromFile} as JSON (${(e as Error).message.split('\n')[0]})`);
    }
  }
  const body = {
    ...base,
    name,
    ...(o.connectionSecret !== undefined ? { connectionSecret: o.connectionSecret } : {}),
    ...(o.creation ? { creationStatements: o.creation } : {}),
    ...(o.revocation ? { revocationStatements: o.revocation } : {}),
    ...(o.renew ? { renewStatements: o.renew } : {}),
    ...(o.defaultTtl !== undefined ? { defaultTtlSeconds: o.defaultTtl } : {}),
    ...(o.maxTtl !== undefined ? { maxTtlSeconds: o.maxTtl } : {}),
    ...(o.usernameTemplate !== undefined ? { usernameTemplate: o.usernameTemplate } : {}),
  };
  // Without revocation statements Coffer still ends sessions and drops the role; say so with an empty list.
  if (!('revocationStatements' in body)) (body as Record<string, unknown>).revocationStatements = [];
  const parsed = CreatePostgresBackendRequest.safeParse(body);
  if (!parsed.success) {
    throw usageError(parsed.error.issues.map((i) => `${i.path.join('.') || 'backend'}: ${i.message}`).join('; '));
  }
  return parsed.data;
}

export function registerDynamic(program: Command): void {
  const dynamic = program
    .command('dynamic')
    .summary('Dynamic database credentials: backends (tenant admin)')
    .description(
      'Backends that make short-lived PostgreSQL roles on demand (see `coffer lease`). The admin connection URL ' +
        'lives in a Coffer secret; statements use {{name}}, {{password}}, {{expiration}}, quoted by Coffer.',
    );

  examples(
    dynamic
      .command('create')
      .summary('Configure a PostgreSQL backend')
      .argument('<name>', 'the backend, e.g. orders-db (leases: `dynamic/<name>` in policies)')
      .option('--connection-secret <path>', 'the secret (kind/owner/name) that holds the admin connection URL')
      .option('--creation <sql>', 'a creation statement (repeat for several, run in order in one transaction)', collect)
      .option('--revocation <sql>', 'a statement run before the role is dropped (repeatable)', collect)
      .option('--renew <sql>', 'a statement run on renewal (repeatable; default ALTER ROLE … VALID UNTIL)', collect)
      .option(
        '--default-ttl <duration>',
        'lease length when not asked for: 3600, 90m, 12h, 7d',
        ttlArg('--default-ttl'),
      )
      .option('--max-ttl <duration>', 'no lease outlives its creation by more', ttlArg('--max-ttl'))
      .option('--username-template <template>', 'e.g. v_{{backend}}_{{identity}}_{{random}}')
      .option('--from-file <file>', 'the backend as JSON (the request body); options override its fields')
      .option('--json', 'print the backend as JSON')
      .action(async (name: string, opts: CreateOptions, cmd: Command) => {
        const body = backendBody(name, opts);
        const { client } = connect(globalsOf(cmd));
        const made = await client.call('createPostgresBackend', { body });
        if (opts.json) return json(made);
        note(`Configured ${made.name}: services with read on dynamic/${made.name} may now take leases.`);
      }),
    [
      `$ coffer dynamic create orders-db --connection-secret shared/db/ADMIN_URL \\`,
      `    --creation 'CREATE ROLE {{name}} LOGIN PASSWORD {{password}} VALID UNTIL {{expiration}}' \\`,
      `    --creation 'GRANT SELECT ON ALL TABLES IN SCHEMA public TO {{name}}' \\`,
      `    --revocation 'REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {{name}}' --default-ttl 1h --max-ttl 24h`,
      '$ coffer dynamic create orders-db --from-file orders-db.json',
    ],
  );

  examples(
    dynamic
      .command('list')
      .summary('The backends')
      .option('--json', 'print as JSON')
      .action(async (opts: { json?: boolean }, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        const { items } = await client.call('listPostgresBackends');
        if (opts.json) return json(items);
        if (items.length === 0) return note('No backends.');
        const s = styleFor(process.stdout);
        out(
          table(
            items.map((b) => [
              b.name,
              b.connectionSecret,
              `${b.defaultTtlSeconds}s/${b.maxTtlSeconds}s`,
              String(b.activeLeases),
            ]),
            ['NAME', 'CONNECTION SECRET', 'TTL/MAX', 'ACTIVE LEASES'].map(s.bold),
          ),
        );
      }),
    ['$ coffer dynamic list'],
  );

  examples(
    dynamic
      .command('show')
      .summary('One backend (never its connection URL)')
      .argument('<name>', 'the backend')
      .option('--json', 'print as JSON')
      .action(async (name: string, opts: { json?: boolean }, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        const b = await client.call('getPostgresBackend', { params: { name } });
        if (opts.json) return json(b);
        printBackend(b);
      }),
    ['$ coffer dynamic show orders-db'],
  );

  examples(
    dynamic
      .command('delete')
      .summary('Remove a backend (once its leases are revoked)')
      .argument('<name>', 'the backend')
      .action(async (name: string, _opts: unknown, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        await client.call('deletePostgresBackend', { params: { name } });
        note(`Removed ${name}.`);
      }),
    ['$ coffer lease revoke --backend orders-db && coffer dynamic delete orders-db'],
  );

  const lease = program
    .command('lease')
    .summary('Leases of dynamic credentials: take, renew, revoke, list')
    .description('A lease is a database role made for you, dropped when the lease ends.');

  examples(
    lease
      .command('create')
      .summary('Take a lease: a new username and password, shown once')
      .argument('<backend>', 'the backend (your identity needs read on dynamic/<backend>)')
      .option('--ttl <duration>', "how long: seconds or 15m, 12h (default the backend's)", ttlArg('--ttl'))
      .option('--deployment <id>', 'the deployment the lease is for: revoking the deployment revokes the lease')
      .option('--dotenv', 'print PGUSER=, PGPASSWORD= and COFFER_LEASE_ID= lines instead of JSON')
      .action(async (backend: string, opts: { ttl?: number; deployment?: string; dotenv?: boolean }, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        const l = await client.createLease(backend, {
          ...(opts.ttl !== undefined ? { ttlSeconds: opts.ttl } : {}),
          ...(opts.deployment !== undefined ? { deployment: opts.deployment } : {}),
        });
        if (opts.dotenv) {
          out(`PGUSER=${l.username}\nPGPASSWORD=${l.password}\nCOFFER_LEASE_ID=${l.leaseId}\n`);
        } else {
          json(l);
        }
        note(`Lease ${l.leaseId} ends ${l.expiresAt} (renewable until ${l.maxExpiresAt}).`);
      }),
    [
      '$ coffer lease create orders-db > lease.json',
      '$ coffer lease create orders-db --ttl 15m --dotenv > .pg.env && chmod 600 .pg.env',
      '$ coffer lease create orders-db --deployment 01912f80-…',
    ],
  );

  examples(
    lease
      .command('renew')
      .summary('Extend a lease (never past its maximum)')
      .argument('<lease-id>', 'the lease')
      .option('--ttl <duration>', 'from now (default the backend’s)', ttlArg('--ttl'))
      .option('--json', 'print the lease as JSON')
      .action(async (id: string, opts: { ttl?: number; json?: boolean }, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        const l = await client.renewLease(id, opts.ttl !== undefined ? { ttlSeconds: opts.ttl } : {});
        if (opts.json) return json(l);
        note(
          l.expiresAt === l.maxExpiresAt
            ? `Lease ${id} now ends ${l.expiresAt}: its maximum, it cannot be renewed further.`
            : `Lease ${id} now ends ${l.expiresAt}.`,
        );
      }),
    ['$ coffer lease renew 01912f7a-… --ttl 1h'],
  );

  examples(
    lease
      .command('revoke')
      .summary('End a lease now, or every lease of an identity, backend or deployment')
      .argument('[lease-id]', 'the lease')
      .option('--identity <id>', 'every lease of this identity (tenant admin)')
      .option('--backend <name>', 'every lease of this backend (tenant admin)')
      .option('--deployment <id>', 'every lease made for this deployment (tenant admin)')
      .option('--json', 'print the result as JSON')
      .action(
        async (
          id: string | undefined,
          opts: { identity?: string; backend?: string; deployment?: string; json?: boolean },
          cmd: Command,
        ) => {
          const many = opts.identity !== undefined || opts.backend !== undefined || opts.deployment !== undefined;
          if ((id === undefined) === !many) {
            throw usageError('give a lease id, or any of --identity, --backend and --deployment');
          }
          const { client } = connect(globalsOf(cmd));
          if (id !== undefined) {
            const l = await client.revokeLease(id);
            if (opts.json) return json(l);
            return note(
              l.state === 'revoked'
                ? `Revoked ${id}: the role ${l.username} is gone.`
                : `Revoking ${id}: the database did not answer, Coffer keeps trying (${l.lastError ?? l.state}).`,
            );
          }
          const r = await client.call('revokeLeases', {
            query: {
              ...(opts.identity ? { identity: opts.identity } : {}),
              ...(opts.backend ? { backend: opts.backend } : {}),
              ...(opts.deployment ? { deployment: opts.deployment } : {}),
            },
          });
          if (opts.json) return json(r);
          note(`Asked ${r.requested} lease(s) to end: ${r.revoked} revoked, ${r.pending} still being revoked.`);
        },
      ),
    ['$ coffer lease revoke 01912f7a-…', '$ coffer lease revoke --identity 01912f6c-…'],
  );

  examples(
    lease
      .command('list')
      .summary('The lease inventory (admin, auditor)')
      .option('--identity <id>', 'leases of this identity')
      .option('--backend <name>', 'leases of this backend')
      .option('--deployment <id>', 'leases made for this deployment')
      .option('--state <state>', LeaseState.options.join(' | '), (raw: string) => {
        const s = LeaseState.safeParse(raw);
        if (!s.success) throw usageError(`--state must be one of ${LeaseState.options.join(', ')}`);
        return s.data;
      })
      .option('--json', 'print as JSON')
      .action(
        async (
          opts: { identity?: string; backend?: string; deployment?: string; state?: LeaseState; json?: boolean },
          cmd: Command,
        ) => {
          const { client } = connect(globalsOf(cmd));
          const items = await client
            .listLeases({
              ...(opts.identity ? { identity: opts.identity } : {}),
              ...(opts.backend ? { backend: opts.backend } : {}),
              ...(opts.deployment ? { deployment: opts.deployment } : {}),
              ...(opts.state ? { state: opts.state } : {}),
              limit: 500,
            })
            .all();
          if (opts.json) return json(items);
          if (items.length === 0) return note('No leases.');
          printLeases(items);
        },
      ),
    ['$ coffer lease list --state revoke_failed', '$ coffer lease list --backend orders-db --json'],
  );

  examples(
    lease
      .command('show')
      .summary('One lease')
      .argument('<lease-id>', 'the lease')
      .option('--json', 'print as JSON')
      .action(async (id: string, opts: { json?: boolean }, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        const l = await client.getLease(id);
        if (opts.json) return json(l);
        printLeases([l]);
      }),
    ['$ coffer lease show 01912f7a-…'],
  );
}
