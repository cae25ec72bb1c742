import type { SecretConsumer } from '@coffer/contracts';
import { CofferError, parseSecretPath } from '@coffer/sdk';
import type { Command } from 'commander';
import { connect } from '../context.ts';
import { json, note, out, styleFor, table } from '../output.ts';
import { envOption, examples, globalsOf, positiveInt, windowArg } from './common.ts';

const who = (c: SecretConsumer) => c.identity.name ?? c.identity.id ?? 'unknown';

function consumerTable(items: SecretConsumer[], current: number): string {
  const s = styleFor(process.stdout);
  return table(
    items.map((c) => [
      who(c),
      c.deployment ?? '',
      c.lastVersion === current ? String(c.lastVersion) : s.yellow(String(c.lastVersion)),
      c.source,
      c.lastReadAt,
      String(c.reads),
    ]),
    ['IDENTITY', 'DEPLOYMENT', 'VERSION', 'VIA', 'LAST READ', 'READS'].map(s.bold),
  );
}

export function registerConsumers(program: Command): void {
  examples(
    program
      .command('consumers')
      .summary('Who reads a secret, and whether the previous version may go')
      .argument('<path>', 'kind/owner/name')
      .description(
        'Who reads a secret, per identity and per deployment, from the audit log: the last read, the version it ' +
          'read and how (the secret itself, a bundle, or generated for a deployment). Then the rotation status: who ' +
          'is still on the previous version within the grace period, and whether revoking it is safe.',
      )
      .addOption(envOption())
      .option('--within <duration>', 'reads within this window, e.g. 7d (default 30d)', windowArg('--within'))
      .option('--json', 'print the consumers and the rotation status as JSON')
      .action(async (path: string, opts: { env?: string; within?: string; json?: boolean }, cmd: Command) => {
        const p = parseSecretPath(path);
        const { client } = connect(globalsOf(cmd));
        const env = opts.env !== undefined ? { env: opts.env } : {};
        const consumers = await client.call('secretConsumers', {
          params: p,
          query: { ...env, ...(opts.within ? { within: opts.within } : {}) },
        });
        const status = await client.call('rotationStatus', { params: p, query: env });
        if (opts.json) return json({ consumers, status });
        if (consumers.items.length === 0) out(`No reads of ${path} since ${consumers.since}.\n`);
        else out(consumerTable(consumers.items, consumers.current));
        const s = styleFor(process.stdout);
        if (status.previous === null) {
          note(`Version ${status.current} is current; there is no previous version.`);
        } else if (status.previousRevokedAt) {
          note(
            `Version ${status.current} is current; version ${status.previous} was revoked at ${status.previousRevokedAt}.`,
          );
        } else {
          const n = status.consumersOnPrevious.length;
          note(
            `Version ${status.current} is current; ${n === 0 ? 'nobody' : `${n} consumer${n === 1 ? '' : 's'}`} read version ` +
              `${status.previous} in the last ${status.graceHours} hours: ` +
              (status.safeToRevoke
                ? s.green(`safe to revoke (coffer revoke ${path} --version ${status.previous})`)
                : s.yellow(`not safe to revoke yet (${status.consumersOnPrevious.map(who).join(', ')})`)),
          );
        }
      }),
    ['$ coffer consumers sandbox/app/DB_URL', '$ coffer consumers shared/payments/STRIPE_KEY --env production --json'],
  );

  examples(
    program
      .command('revoke')
      .summary('Stop serving one version of a secret (410 from then on)')
      .argument('<path>', 'kind/owner/name')
      .requiredOption('--version <n>', 'the version to revoke (not the current one)', positiveInt('--version'))
      .addOption(envOption())
      .option('--force', 'revoke even while consumers still read it')
      .option('--notes <text>', 'why, for the rotation log')
      .option('--json', 'print the result as JSON')
      .description(
        'Stop serving one version: it answers 410 from then on. Refused (exit 1, naming them) while a consumer ' +
          'still read it within the grace period, or a live deployment was made on it, unless --force.',
      )
      .action(
        async (
          path: string,
          opts: { version: number; env?: string; force?: boolean; notes?: string; json?: boolean },
          cmd: Command,
        ) => {
          const p = parseSecretPath(path);
          const { client } = connect(globalsOf(cmd));
          try {
            const r = await client.call('revokeSecretVersion', {
              params: { ...p, version: opts.version },
              ...(opts.env !== undefined ? { query: { env: opts.env } } : {}),
              body: {
                ...(opts.force ? { force: true } : {}),
                ...(opts.notes !== undefined ? { notes: opts.notes } : {}),
              },
            });
            if (opts.json) return json(r);
            note(
              `Revoked version ${r.version} of ${path} at ${r.revokedAt}` +
                (r.forced && r.consumersPending.length > 0
                  ? ` (forced: ${r.consumersPending.map(who).join(', ')} still read it)`
                  : '.'),
            );
          } catch (e) {
            if (e instanceof CofferError && e.code === 'consumers_pending' && !opts.json) {
              note(`Not revoked: ${e.message}`);
            }
            throw e;
          }
        },
      ),
    [
      '$ coffer revoke sandbox/app/DB_URL --version 3',
      '$ coffer revoke sandbox/app/DB_URL --version 3 --force --notes "leaked in a log"',
    ],
  );

  examples(
    program
      .command('inventory')
      .summary('Owners, contacts, classes and rotation cadence of every secret')
      .addOption(envOption('only this environment (default: every environment)'))
      .option('--team <team>', 'only secrets this team owns')
      .option('--json', 'print as JSON')
      .description('Every secret per environment: class, owning team, contact and rotation cadence (admins, auditors).')
      .action(async (opts: { env?: string; team?: string; json?: boolean }, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        const items = await client
          .inventory({ limit: 1000, ...(opts.env ? { env: opts.env } : {}), ...(opts.team ? { team: opts.team } : {}) })
          .all();
        if (opts.json) return json(items);
        if (items.length === 0) return note('No secrets.');
        const s = styleFor(process.stdout);
        out(
          table(
            items.map((i) => [
              i.environment,
              i.path,
              i.class ?? '',
              i.ownerTeam ?? '',
              i.contact ?? '',
              i.rotationIntervalDays === null ? '' : `${i.rotationIntervalDays}d`,
              i.overdue ? s.red(i.nextRotationAt ?? '') : (i.nextRotationAt ?? ''),
            ]),
            ['ENVIRONMENT', 'PATH', 'CLASS', 'TEAM', 'CONTACT', 'EVERY', 'NEXT ROTATION'].map(s.bold),
          ),
        );
      }),
    ['$ coffer inventory', '$ coffer inventory --env production --team payments --json'],
  );
}
