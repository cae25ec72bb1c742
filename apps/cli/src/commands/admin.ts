import { Capability, FederationBinding, type Policy, PolicyPath, WebhookEvent } from '@coffer/contracts';
import type { Command } from 'commander';
import { connect, newClient, serverUrl } from '../context.ts';
import { CliError, EXIT, json, note, out, styleFor, table, usageError } from '../output.ts';
import { examples, globalsOf, positiveInt, timeArg } from './common.ts';

/** `path:cap,cap`, e.g. `sandbox/sbx-42/*:read,list`; the path holds no colon, so the last one splits. */
export function policyArg(raw: string, previous: Policy[] = []): Policy[] {
  const at = raw.lastIndexOf(':');
  const path = raw.slice(0, at);
  const caps = raw.slice(at + 1).split(',');
  if (at < 1 || !PolicyPath.safeParse(path).success || !caps.every((c) => Capability.safeParse(c).success))
    throw usageError(
      `--policy must be path:capability[,capability] with capabilities ${Capability.options.join(', ')}, e.g. 'sandbox/sbx-42/*:read,list', not "${raw}"`,
    );
  return [...previous, { path, capabilities: caps as Capability[] }];
}

/** A workload-identity binding as JSON, e.g. `{"issuer":"github-actions","claims":{"repository":"acme/api"}}`. */
export function bindingArg(raw: string, previous: FederationBinding[] = []): FederationBinding[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    parsed = undefined;
  }
  const b = FederationBinding.safeParse(parsed);
  if (!b.success)
    throw usageError(
      `--federation must be a binding as JSON with an issuer and a subject or claims, e.g. '{"issuer":"github-actions","claims":{"repository":"acme/api"}}', not ${raw}`,
    );
  return [...previous, b.data];
}

function ttlArg(raw: string): number | null {
  if (raw === 'default') return null;
  const m = /^(\d{1,6})(s|m|h)?$/.exec(raw);
  const n = m ? Number(m[1]) * (m[2] === 'h' ? 3600 : m[2] === 'm' ? 60 : 1) : Number.NaN;
  if (!Number.isInteger(n) || n < 60 || n > 86_400)
    throw usageError(`--token-ttl must be 60s to 24h (e.g. 15m, 1h) or "default", not "${raw}"`);
  return n;
}

function rateArg(raw: string): number | null {
  if (raw === 'default') return null;
  return positiveInt('--rate-limit')(raw);
}

const events = (raw: string, previous: WebhookEvent[] = []): WebhookEvent[] => {
  const e = WebhookEvent.safeParse(raw);
  if (!e.success) throw usageError(`--event must be one of ${WebhookEvent.options.join(', ')}, not "${raw}"`);
  return [...previous, e.data];
};

/**
 * A secret shown once (a client secret, a webhook signing secret) goes to standard output only, and alone on its
 * line, so it can be piped into a vault; the words around it go to standard error.
 */
function showOnce(label: string, secret: string): void {
  note(`${label} (shown once; Coffer keeps only a hash of it):`);
  out(`${secret}\n`);
}

export function registerTenants(program: Command): void {
  const tenants = program
    .command('tenants')
    .summary('Tenants (platform admin)')
    .description('Tenants: platform admin only.');
  examples(
    tenants
      .command('ls')
      .description('List tenants.')
      .option('--json', 'print as JSON')
      .action(async (opts: { json?: boolean }, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        const items = [];
        let cursor: string | undefined;
        do {
          const page = await client.call('listTenants', { query: { limit: 1000, ...(cursor ? { cursor } : {}) } });
          items.push(...page.items);
          cursor = page.nextCursor ?? undefined;
        } while (cursor);
        if (opts.json) return json(items);
        const s = styleFor(process.stdout);
        out(
          table(
            items.map((t) => [t.id, t.slug, t.name, t.rateLimitPerSecond === null ? '' : String(t.rateLimitPerSecond)]),
            ['ID', 'SLUG', 'NAME', 'RATE LIMIT/S'].map(s.bold),
          ),
        );
      }),
    ['$ coffer tenants ls'],
  );
  examples(
    tenants
      .command('create')
      .description("Create a tenant and its first admin; the admin's client secret is printed once, on stdout.")
      .argument('<slug>', '2-63 lowercase letters, digits or dashes')
      .requiredOption('--name <name>', 'a display name')
      .option('--rate-limit <n>', 'requests per second per identity', positiveInt('--rate-limit'))
      .option('--json', 'print the tenant and the admin credentials as JSON')
      .action(async (slug: string, opts: { name: string; rateLimit?: number; json?: boolean }, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        const r = await client.call('createTenant', {
          body: {
            slug,
            name: opts.name,
            ...(opts.rateLimit !== undefined ? { rateLimitPerSecond: opts.rateLimit } : {}),
          },
        });
        if (opts.json) return json(r);
        note(`Created tenant ${r.tenant.slug} (${r.tenant.id}); its admin's client id is ${r.admin.clientId}.`);
        showOnce("The admin's client secret", r.admin.clientSecret);
      }),
    ['$ coffer tenants create acme --name "Acme Corp" > acme-admin-secret.txt'],
  );
  examples(
    tenants
      .command('show')
      .description('One tenant.')
      .argument('<id>', 'the tenant id')
      .option('--json', 'print as JSON')
      .action(async (id: string, opts: { json?: boolean }, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        const t = await client.call('getTenant', { params: { id } });
        if (opts.json) return json(t);
        out(table(Object.entries(t).map(([k, v]) => [k, v === null ? '' : String(v)])));
      }),
    ['$ coffer tenants show 7d0c…'],
  );
  examples(
    tenants
      .command('update')
      .description("Rename a tenant or set its identities' request rate limit.")
      .argument('<id>', 'the tenant id')
      .option('--name <name>', 'a new display name')
      .option('--rate-limit <n>', 'requests per second per identity, or "default"', rateArg)
      .option('--json', 'print as JSON')
      .action(async (id: string, opts: { name?: string; rateLimit?: number | null; json?: boolean }, cmd: Command) => {
        if (opts.name === undefined && opts.rateLimit === undefined)
          throw usageError('nothing to change: give --name or --rate-limit');
        const { client } = connect(globalsOf(cmd));
        const t = await client.call('updateTenant', {
          params: { id },
          body: {
            ...(opts.name !== undefined ? { name: opts.name } : {}),
            ...(opts.rateLimit !== undefined ? { rateLimitPerSecond: opts.rateLimit } : {}),
          },
        });
        if (opts.json) return json(t);
        note(`Updated tenant ${t.slug}.`);
      }),
    ['$ coffer tenants update 7d0c… --rate-limit 200'],
  );
  examples(
    tenants
      .command('audit-retention')
      .description("Set how many days a tenant's audit events are kept, 30 to 3650 (platform admin; audited).")
      .argument('<id>', 'the tenant id')
      .requiredOption('--days <n>', 'keep events this many days', positiveInt('--days'))
      .option('--json', 'print as JSON')
      .action(async (id: string, opts: { days: number; json?: boolean }, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        const r = await client.call('setAuditRetention', { params: { id }, body: { days: opts.days } });
        if (opts.json) return json(r);
        note(`Audit events of ${r.tenantId} are kept ${r.days} days (were ${r.previousDays}).`);
      }),
    ['$ coffer tenants audit-retention 7d0c… --days 730'],
  );
}

export function registerIdentities(program: Command): void {
  const ids = program
    .command('identities')
    .summary('Machine identities and their policies (tenant admin)')
    .description('Machine identities of your tenant and their path policies (tenant admin).');
  examples(
    ids
      .command('ls')
      .description('List identities.')
      .option('--json', 'print as JSON')
      .action(async (opts: { json?: boolean }, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        const items = [];
        let cursor: string | undefined;
        do {
          const page = await client.call('listIdentities', { query: { limit: 1000, ...(cursor ? { cursor } : {}) } });
          items.push(...page.items);
          cursor = page.nextCursor ?? undefined;
        } while (cursor);
        if (opts.json) return json(items);
        const s = styleFor(process.stdout);
        out(
          table(
            items.map((i) => [
              i.id,
              i.name,
              i.role,
              i.clientId,
              i.disabled ? s.red('disabled') : '',
              i.policies.map((p) => `${p.path}:${p.capabilities.join(',')}`).join(' '),
            ]),
            ['ID', 'NAME', 'ROLE', 'CLIENT ID', 'STATE', 'POLICIES'].map(s.bold),
          ),
        );
      }),
    ['$ coffer identities ls', '$ coffer identities ls --json | jq -r ".[].name"'],
  );
  examples(
    ids
      .command('create')
      .description('Create an identity; its client secret is printed once, on stdout (a note on stderr says so).')
      .argument('<name>', 'a name, e.g. billing-api')
      .option('--role <role>', 'admin, service or auditor', 'service')
      .option('--policy <path:caps>', "a policy for a service, e.g. 'sandbox/sbx-42/*:read,list' (repeat)", policyArg)
      .option('--token-ttl <duration>', 'token lifetime, 60s to 24h (e.g. 15m)', ttlArg)
      .option('--federation <binding-json>', 'a workload-identity binding to a trusted issuer (repeat)', bindingArg)
      .option('--json', 'print the identity and its client secret as JSON')
      .action(
        async (
          name: string,
          opts: {
            role: string;
            policy?: Policy[];
            tokenTtl?: number | null;
            federation?: FederationBinding[];
            json?: boolean;
          },
          cmd: Command,
        ) => {
          if (opts.role !== 'admin' && opts.role !== 'service' && opts.role !== 'auditor')
            throw usageError(`--role must be admin, service or auditor, not "${opts.role}"`);
          const { client } = connect(globalsOf(cmd));
          const r = await client.call('createIdentity', {
            body: {
              name,
              role: opts.role,
              ...(opts.policy ? { policies: opts.policy } : {}),
              ...(typeof opts.tokenTtl === 'number' ? { tokenTtlSeconds: opts.tokenTtl } : {}),
              ...(opts.federation ? { federation: opts.federation } : {}),
            },
          });
          if (opts.json) return json(r);
          note(
            `Created ${r.identity.role} identity ${r.identity.name} (${r.identity.id}), client id ${r.identity.clientId}.`,
          );
          showOnce('Its client secret', r.clientSecret);
        },
      ),
    [
      "$ coffer identities create billing-api --policy 'sandbox/sbx-42/*:read,list' > billing-api.secret",
      '$ coffer identities create auditor-1 --role auditor --json',
    ],
  );
  examples(
    ids
      .command('show')
      .description('One identity.')
      .argument('<id>', 'the identity id')
      .option('--json', 'print as JSON')
      .action(async (id: string, opts: { json?: boolean }, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        const i = await client.call('getIdentity', { params: { id } });
        if (opts.json) return json(i);
        out(
          table([
            ...Object.entries(i)
              .filter(([k]) => k !== 'policies' && k !== 'federation')
              .map(([k, v]) => [k, v === null ? '' : String(v)]),
            ...i.policies.map((p, n) => [n === 0 ? 'policies' : '', `${p.path}: ${p.capabilities.join(', ')}`]),
            ...i.federation.map((b, n) => [n === 0 ? 'federation' : '', JSON.stringify(b)]),
          ]),
        );
      }),
    ['$ coffer identities show 3f2a…'],
  );
  examples(
    ids
      .command('update')
      .description('Rename, re-scope (--policy replaces every policy), disable or enable an identity.')
      .argument('<id>', 'the identity id')
      .option('--name <name>', 'a new name')
      .option('--policy <path:caps>', 'the new policies (repeat; replaces them all)', policyArg)
      .option('--no-policies', 'remove every policy')
      .option('--disable', 'stop the identity: its tokens fail on their next request')
      .option('--enable', 'let a disabled identity log in again')
      .option('--token-ttl <duration>', 'token lifetime, 60s to 24h, or "default"', ttlArg)
      .option(
        '--federation <binding-json>',
        'the new workload-identity bindings (repeat; replaces them all)',
        bindingArg,
      )
      .option('--no-federation', 'remove every workload-identity binding')
      .option('--json', 'print as JSON')
      .action(
        async (
          id: string,
          opts: {
            name?: string;
            policy?: Policy[];
            policies?: boolean;
            disable?: boolean;
            enable?: boolean;
            tokenTtl?: number | null;
            federation?: FederationBinding[] | false;
            json?: boolean;
          },
          cmd: Command,
        ) => {
          if (opts.disable && opts.enable) throw usageError('give --disable or --enable, not both');
          const body = {
            ...(opts.name !== undefined ? { name: opts.name } : {}),
            ...(opts.policy ? { policies: opts.policy } : opts.policies === false ? { policies: [] } : {}),
            ...(opts.disable ? { disabled: true } : opts.enable ? { disabled: false } : {}),
            ...(opts.tokenTtl !== undefined ? { tokenTtlSeconds: opts.tokenTtl } : {}),
            ...(opts.federation === false
              ? { federation: [] }
              : opts.federation
                ? { federation: opts.federation }
                : {}),
          };
          if (Object.keys(body).length === 0) throw usageError('nothing to change: give at least one option');
          const { client } = connect(globalsOf(cmd));
          const i = await client.call('updateIdentity', { params: { id }, body });
          if (opts.json) return json(i);
          note(`Updated identity ${i.name}${i.disabled ? ' (disabled)' : ''}.`);
        },
      ),
    [
      "$ coffer identities update 3f2a… --policy 'sandbox/sbx-42/*:read,list' --policy 'shared/ops/*:read'",
      '$ coffer identities update 3f2a… --disable',
    ],
  );
  examples(
    ids
      .command('rm')
      .description('Delete an identity; its tokens stop working at once.')
      .argument('<id>', 'the identity id')
      .action(async (id: string, _opts: unknown, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        await client.call('deleteIdentity', { params: { id } });
        note(`Deleted identity ${id}.`);
      }),
    ['$ coffer identities rm 3f2a…'],
  );
  examples(
    ids
      .command('rotate-secret')
      .description('Issue a new client secret (printed once, on stdout); the old one and its tokens stop working.')
      .argument('<id>', 'the identity id')
      .option('--json', 'print the new credentials as JSON')
      .action(async (id: string, opts: { json?: boolean }, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        const r = await client.call('rotateIdentitySecret', { params: { id } });
        if (opts.json) return json(r);
        note(`New client secret for ${r.clientId}; the old one no longer works.`);
        showOnce('The new client secret', r.clientSecret);
      }),
    ['$ coffer identities rotate-secret 3f2a… > billing-api.secret'],
  );
}

export function registerWebhooks(program: Command): void {
  const hooks = program.command('webhooks').summary("The tenant's webhooks").description("The tenant's webhooks.");
  examples(
    hooks
      .command('ls')
      .description('List webhooks.')
      .option('--json', 'print as JSON')
      .action(async (opts: { json?: boolean }, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        const r = await client.call('listWebhooks');
        if (opts.json) return json(r.items);
        const s = styleFor(process.stdout);
        out(
          table(
            r.items.map((w) => [w.id, w.url, w.events.join(','), w.disabled ? 'disabled' : '']),
            ['ID', 'URL', 'EVENTS', 'STATE'].map(s.bold),
          ),
        );
      }),
    ['$ coffer webhooks ls'],
  );
  examples(
    hooks
      .command('create')
      .description('Register a webhook; its signing secret is printed once, on stdout.')
      .argument('<url>', 'an http(s) URL')
      .requiredOption('--event <event>', `${WebhookEvent.options.join(', ')} (repeat)`, events)
      .option('--json', 'print the webhook and its signing secret as JSON')
      .action(async (url: string, opts: { event: WebhookEvent[]; json?: boolean }, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        const r = await client.call('createWebhook', { body: { url, events: opts.event } });
        if (opts.json) return json(r);
        note(`Registered webhook ${r.webhook.id} for ${r.webhook.events.join(', ')}.`);
        showOnce('Its signing secret', r.signingSecret);
      }),
    ['$ coffer webhooks create https://hooks.internal/coffer --event secret.rotated --event key.rotated'],
  );
  examples(
    hooks
      .command('rm')
      .description('Remove a webhook and its pending deliveries.')
      .argument('<id>', 'the webhook id')
      .action(async (id: string, _opts: unknown, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        await client.call('deleteWebhook', { params: { id } });
        note(`Removed webhook ${id}.`);
      }),
    ['$ coffer webhooks rm 9b1e…'],
  );
  examples(
    hooks
      .command('deliveries')
      .description('Recent deliveries of a webhook and their outcome.')
      .argument('<id>', 'the webhook id')
      .option('--json', 'print as JSON')
      .action(async (id: string, opts: { json?: boolean }, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        const r = await client.call('webhookDeliveries', { params: { id } });
        if (opts.json) return json(r.items);
        const s = styleFor(process.stdout);
        out(
          table(
            r.items.map((d) => [
              d.createdAt,
              d.event,
              d.status === 'failed' ? s.red(d.status) : d.status,
              String(d.attempts),
              d.lastStatusCode === null ? '' : String(d.lastStatusCode),
              d.lastError ?? '',
            ]),
            ['CREATED', 'EVENT', 'STATUS', 'ATTEMPTS', 'HTTP', 'ERROR'].map(s.bold),
          ),
        );
      }),
    ['$ coffer webhooks deliveries 9b1e…'],
  );
}

export function registerKeys(program: Command): void {
  const keys = program.command('keys').summary("The tenant's data keys").description("The tenant's data keys.");
  examples(
    keys
      .command('ls')
      .description('Data keys: state and how many ciphertexts each still seals.')
      .option('--json', 'print as JSON')
      .action(async (opts: { json?: boolean }, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        const r = await client.call('listDataKeys');
        if (opts.json) return json(r);
        const s = styleFor(process.stdout);
        out(
          table(
            r.items.map((k) => [String(k.version), k.state, String(k.ciphertexts), k.masterKeyId ?? '', k.createdAt]),
            ['VERSION', 'STATE', 'CIPHERTEXTS', 'MASTER KEY', 'CREATED'].map(s.bold),
          ),
        );
      }),
    ['$ coffer keys ls'],
  );
  examples(
    keys
      .command('rotate')
      .description('A new data key for new writes at once; older versions are re-encrypted in the background.')
      .option('--json', 'print as JSON')
      .action(async (opts: { json?: boolean }, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        const r = await client.call('rotateDataKey');
        if (opts.json) return json(r);
        note(
          `Data key version ${r.keyVersion} is active; re-encrypting under it: ${r.retiring.join(', ') || 'nothing'}.`,
        );
      }),
    ['$ coffer keys rotate'],
  );

  const system = program
    .command('system')
    .summary('Master keys (platform admin)')
    .description('Master keys: platform admin only.');
  examples(
    system
      .command('keys')
      .description('Which master keys still wrap or sign something (keep those in the keyring).')
      .option('--json', 'print as JSON')
      .action(async (opts: { json?: boolean }, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        const r = await client.call('systemKeys');
        if (opts.json) return json(r);
        const s = styleFor(process.stdout);
        note(`Active master key: ${r.activeMasterKeyId}; keyring: ${r.keyring.join(', ')}.`);
        out(
          table(
            r.inUse.map((k) => [
              k.masterKeyId,
              k.inKeyring ? 'yes' : s.red('no'),
              String(k.dataKeys),
              String(k.fingerprintKeys),
              String(k.webhookSecrets),
              String(k.checkpoints),
            ]),
            ['MASTER KEY', 'IN KEYRING', 'DATA KEYS', 'FINGERPRINT KEYS', 'WEBHOOK SECRETS', 'CHECKPOINTS'].map(s.bold),
          ),
        );
      }),
    ['$ coffer system keys'],
  );
  examples(
    system
      .command('rewrap')
      .description('Re-wrap every data key under the active master key (no value re-encrypted); run again to resume.')
      .option('--json', 'print as JSON')
      .action(async (opts: { json?: boolean }, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        const r = await client.call('rewrapMasterKey');
        if (opts.json) json(r);
        else
          note(
            `Re-wrapped under ${r.activeMasterKeyId}: ${r.rewrapped.dataKeys} data keys, ${r.rewrapped.fingerprintKeys} fingerprint keys, ${r.rewrapped.webhookSecrets} webhook secrets, ${r.rewrapped.checkpoints} checkpoints; ${r.remaining} remaining.`,
          );
        if (r.remaining > 0) throw new CliError(`${r.remaining} items still under another key: run it again`);
      }),
    ['$ coffer system rewrap'],
  );
}

export function registerRotation(program: Command): void {
  const rotation = program
    .command('rotation')
    .summary('Rotation schedules: due and log')
    .description('Rotation schedules.');
  examples(
    rotation
      .command('due')
      .description('Secrets overdue for rotation or due within a window; exit 1 when any is overdue.')
      .option('--within <duration>', 'e.g. 7d, 12h', '7d')
      .option('--json', 'print as JSON')
      .action(async (opts: { within: string; json?: boolean }, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        const r = await client.call('rotationDue', { query: { within: opts.within, limit: 1000 } });
        if (opts.json) json(r.items);
        else if (r.items.length === 0) note(`Nothing due within ${opts.within}.`);
        else {
          const s = styleFor(process.stdout);
          out(
            table(
              r.items.map((d) => [
                d.path,
                d.nextRotationAt,
                d.overdue ? s.red('overdue') : 'due',
                d.automatic ? 'automatic' : 'manual',
              ]),
              ['PATH', 'NEXT ROTATION', 'STATE', 'HOW'].map(s.bold),
            ),
          );
        }
        if (r.items.some((d) => d.overdue)) process.exitCode = EXIT.failure;
      }),
    ['$ coffer rotation due --within 30d'],
  );
  examples(
    rotation
      .command('log')
      .description('Every rotation, manual or scheduled, newest first.')
      .option('--since <time>', 'a duration or a timestamp', timeArg('--since'))
      .option('--limit <n>', 'at most this many', positiveInt('--limit'), 100)
      .option('--json', 'print as JSON')
      .action(async (opts: { since?: string; limit: number; json?: boolean }, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        const r = await client.call('rotationLog', {
          query: { limit: Math.min(opts.limit, 1000), ...(opts.since ? { from: opts.since } : {}) },
        });
        if (opts.json) return json(r.items);
        const s = styleFor(process.stdout);
        out(
          table(
            r.items.map((e) => [
              e.at,
              e.path,
              `${e.fromVersion ?? '-'} → ${e.toVersion ?? '-'}`,
              e.trigger,
              e.actorName ?? e.actorId ?? '',
              e.outcome === 'allowed' ? e.outcome : s.red(`${e.outcome}${e.errorCode ? ` (${e.errorCode})` : ''}`),
            ]),
            ['AT', 'PATH', 'VERSIONS', 'TRIGGER', 'BY', 'OUTCOME'].map(s.bold),
          ),
        );
      }),
    ['$ coffer rotation log --since 30d'],
  );
}

/** The public routes: no login needed, so a probe or a new user can ask whether the server is there. */
export function registerStatus(program: Command): void {
  examples(
    program
      .command('status')
      .summary('Is the server up and ready (no login needed)')
      .description('Liveness, readiness and the token-signing keys of the server; exit 1 when it is not ready.')
      .option('--json', 'print as JSON')
      .action(async (opts: { json?: boolean }, cmd: Command) => {
        const url = serverUrl(globalsOf(cmd));
        const client = newClient(url, {});
        const health = await client.call('health');
        // Not ready answers 503 with a body the SDK throws on; its message says which check failed.
        const ready = await client.call('ready').then(
          (r) => ({ ok: true as const, body: r }),
          (e: unknown) => ({ ok: false as const, body: e instanceof Error ? e.message : 'not ready' }),
        );
        const jwks = await client.call('jwks');
        if (opts.json) json({ url, health, ready: ready.body, signingKeys: jwks.keys.length });
        else
          out(
            table([
              ['server', url],
              ['live', 'yes'],
              ['ready', ready.ok ? 'yes' : `no: ${String(ready.body)}`],
              ['signing keys', String(jwks.keys.length)],
            ]),
          );
        if (!ready.ok) process.exitCode = EXIT.failure;
      }),
    ['$ coffer status', '$ coffer status --url https://coffer.internal:7400 --json'],
  );
}

/** Platform admins: the identities that create tenants and rotate the master key. */
export function registerPlatformAdmins(program: Command): void {
  const admins = program
    .command('platform-admins')
    .summary('Platform admins (platform admin)')
    .description('The platform admins: platform admin only. The last enabled one cannot be disabled.');
  examples(
    admins
      .command('ls')
      .description('List platform admins.')
      .option('--json', 'print as JSON')
      .action(async (opts: { json?: boolean }, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        const r = await client.call('listPlatformAdmins');
        if (opts.json) return json(r.items);
        const s = styleFor(process.stdout);
        out(
          table(
            r.items.map((a) => [a.id, a.name, a.clientId, a.disabled ? s.red('disabled') : '', a.secretRotatedAt]),
            ['ID', 'NAME', 'CLIENT ID', 'STATE', 'SECRET ROTATED'].map(s.bold),
          ),
        );
      }),
    ['$ coffer platform-admins ls'],
  );
  examples(
    admins
      .command('create')
      .description('Create another platform admin; its client secret is printed once, on stdout.')
      .argument('<name>', 'a name, e.g. ops-alice')
      .option('--json', 'print the admin and its client secret as JSON')
      .action(async (name: string, opts: { json?: boolean }, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        const r = await client.call('createPlatformAdmin', { body: { name } });
        if (opts.json) return json(r);
        note(`Created platform admin ${r.admin.name} (${r.admin.id}), client id ${r.admin.clientId}.`);
        showOnce('Its client secret', r.clientSecret);
      }),
    ['$ coffer platform-admins create ops-alice > ops-alice.secret'],
  );
  examples(
    admins
      .command('update')
      .description('Disable or enable a platform admin (the last enabled one cannot be disabled).')
      .argument('<id>', 'the platform admin id')
      .option('--disable', 'stop it: its tokens fail on their next request')
      .option('--enable', 'let it log in again')
      .option('--json', 'print as JSON')
      .action(async (id: string, opts: { disable?: boolean; enable?: boolean; json?: boolean }, cmd: Command) => {
        if (opts.disable === opts.enable) throw usageError('give --disable or --enable');
        const { client } = connect(globalsOf(cmd));
        const a = await client.call('updatePlatformAdmin', { params: { id }, body: { disabled: !!opts.disable } });
        if (opts.json) return json(a);
        note(`Platform admin ${a.name} is ${a.disabled ? 'disabled' : 'enabled'}.`);
      }),
    ['$ coffer platform-admins update 1c4d… --disable'],
  );
  examples(
    admins
      .command('rotate-secret')
      .description("Replace a platform admin's client secret (printed once, on stdout); the old one stops working.")
      .argument('<id>', 'the platform admin id')
      .option('--json', 'print the new credentials as JSON')
      .action(async (id: string, opts: { json?: boolean }, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        const r = await client.call('rotatePlatformAdminSecret', { params: { id } });
        if (opts.json) return json(r);
        note(`New client secret for ${r.clientId}; the old one and its tokens no longer work.`);
        showOnce('The new client secret', r.clientSecret);
      }),
    ['$ coffer platform-admins rotate-secret 1c4d… > ops-alice.secret'],
  );
}
