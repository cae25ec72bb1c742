import {
  INTAKE_MAX_EXPIRES_IN,
  INTAKE_MIN_EXPIRES_IN,
  type IntakeLink,
  IntakeState,
  type SecretFormat,
} from '@coffer/contracts';
import { intakeTokenOf, parseSecretPath } from '@coffer/sdk';
import { type Command, Option } from 'commander';
import { connect, newClient, serverUrl } from '../context.ts';
import { describeFormat } from '../formats.ts';
import { json, note, out, styleFor, table, usageError } from '../output.ts';
import { examples, globalsOf } from './common.ts';
import { formatArg, valueFrom } from './secrets.ts';

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 };

/** `90s`, `15m`, `24h`, `7d` or a number of seconds, within the server's bounds (a minute to a week). */
function expiresInArg(raw: string): number {
  const m = /^(\d+)(s|m|h|d)?$/.exec(raw);
  const seconds = m ? Number(m[1]) * (UNIT_SECONDS[m[2] ?? 's'] ?? 1) : Number.NaN;
  if (!Number.isInteger(seconds) || seconds < INTAKE_MIN_EXPIRES_IN || seconds > INTAKE_MAX_EXPIRES_IN) {
    throw usageError(`--expires-in must be a duration from 60s to 7d (like 15m, 24h, 3d) or seconds, not "${raw}"`);
  }
  return seconds;
}

function stateArg(raw: string): IntakeState {
  const s = IntakeState.safeParse(raw);
  if (!s.success) throw usageError(`--state must be one of ${IntakeState.options.join(', ')}`);
  return s.data;
}

function linkRows(items: IntakeLink[]): string {
  const s = styleFor(process.stdout);
  const state = (l: IntakeLink) =>
    l.state === 'pending' ? s.green(l.state) : l.state === 'received' ? l.state : s.yellow(l.state);
  return table(
    items.map((l) => [
      l.id,
      state(l),
      l.path,
      l.environment,
      l.label,
      l.state === 'pending' ? `expires ${l.expiresAt}` : (l.closedAt ?? l.expiresAt),
    ]),
    ['ID', 'STATE', 'PATH', 'ENV', 'LABEL', 'WHEN'].map(s.bold),
  );
}

export function registerIntake(program: Command): void {
  const intake = examples(
    program
      .command('intake')
      .summary('One-time links through which a person supplies a secret')
      .description(
        'Intake links: a one-time URL through which the person who holds a value (an API key, a password) writes ' +
          'it into one secret, checked against a format, without it passing through chat. Only a hash of the ' +
          'link is kept; it works once, until it expires.',
      ),
    [
      '$ coffer intake create shared/payments/STRIPE_KEY --label "Stripe secret key" --format stripe-secret-key',
      '$ coffer intake ls --state pending',
      '$ coffer intake revoke 0190f1c2-…',
      '$ coffer intake submit https://coffer.example.com/v1/intake/…     # the person, with no account',
    ],
  );

  examples(
    intake
      .command('create')
      .summary('Make a link and print its URL')
      .argument('[path]', 'kind/owner/name of the secret the value goes into')
      .description(
        'Make a one-time link into one secret and print its URL (only the URL, on standard output: hand it to the ' +
          'person, not through a log). The write is compare-and-set on the version the secret has now.',
      )
      // `--help` is the prompt's help text here; -h still shows this page, and so does --help with no text.
      .helpOption('-h', 'display help for command')
      .option('--label <text>', 'what to enter, as the person sees it: "Stripe secret key" (required)')
      .option('--help [text]', 'where to find it, shown under the label')
      .option(
        '--format <format>',
        'the rule the value must satisfy (a built-in name or a JSON custom format); default: the secret’s own',
        formatArg,
      )
      .addOption(
        new Option('--expires-in <duration>', 'how long the link works: 60s to 7d')
          .argParser(expiresInArg)
          .default(86_400, '24h'),
      )
      .option('--env <slug>', 'the environment of the secret (default: default)')
      .option('--json', 'print the id, URL, path, environment and expiry as JSON')
      .action(
        async (
          path: string | undefined,
          opts: {
            label?: string;
            help?: string | boolean;
            format?: SecretFormat | null;
            expiresIn: number;
            env?: string;
            json?: boolean;
          },
          cmd: Command,
        ) => {
          if (opts.help === true) {
            cmd.help();
            return;
          }
          if (path === undefined) throw usageError('the secret’s path is required: kind/owner/name');
          if (opts.label === undefined) throw usageError('--label is required: what the person is asked for');
          const p = parseSecretPath(path);
          const { client } = connect(globalsOf(cmd));
          const link = await client.createIntake(p, {
            prompt: { label: opts.label, ...(typeof opts.help === 'string' ? { help: opts.help } : {}) },
            expiresIn: opts.expiresIn,
            ...(opts.format ? { format: opts.format } : {}),
            ...(opts.env !== undefined ? { env: opts.env } : {}),
          });
          if (opts.json) return json(link);
          out(`${link.url}\n`);
          note(`Link ${link.id} into ${link.path} (${link.environment}), until ${link.expiresAt}; it works once.`);
        },
      ),
    [
      '$ coffer intake create shared/payments/STRIPE_KEY --label "Stripe secret key" \\\n' +
        '    --help "Dashboard → Developers → API keys" --format stripe-secret-key --expires-in 1h',
      '$ coffer intake create user/alice/GITHUB_TOKEN --label "GitHub token" --format \'{"minLength":40}\' --env staging',
    ],
  );

  examples(
    intake
      .command('ls')
      .summary('List links (never a token)')
      .description('The tenant’s links, newest first, with their state: pending, received, conflict, revoked, expired.')
      .option('--state <state>', IntakeState.options.join(' | '), stateArg)
      .option('--json', 'print as a JSON array')
      .action(async (opts: { state?: IntakeState; json?: boolean }, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        const { items } = await client.listIntakes({ ...(opts.state ? { state: opts.state } : {}), limit: 1000 });
        if (opts.json) return json(items);
        if (items.length === 0) return note(opts.state ? `No ${opts.state} links.` : 'No intake links.');
        out(linkRows(items));
      }),
    ['$ coffer intake ls', '$ coffer intake ls --state pending --json | jq -r ".[].id"'],
  );

  examples(
    intake
      .command('revoke')
      .summary('Revoke a pending link')
      .argument('<id>', 'the link’s id (from create or ls)')
      .description('Revoke a pending link: its URL answers 410 from now on.')
      .option('--json', 'print the revoked link as JSON')
      .action(async (id: string, opts: { json?: boolean }, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        const link = await client.revokeIntake(id);
        if (opts.json) return json(link);
        note(`Revoked ${link.id} (${link.path}).`);
      }),
    ['$ coffer intake revoke 0190f1c2-7b3e-7c4d-9a51-2f0e6d1c8b7a'],
  );

  examples(
    intake
      .command('submit')
      .summary('Supply the value a link asks for (no login)')
      .argument('<url>', 'the link you were given')
      .description(
        'Show what a link asks for, then send the value once: from --from-file, standard input, or a prompt that ' +
          'does not echo. Needs no login: the link is the credential.',
      )
      .option('--from-file <file>', 'read the value from a file, byte for byte ("-" for stdin)')
      .action(async (url: string, opts: { fromFile?: string }, cmd: Command) => {
        const token = intakeTokenOf(url);
        // The server the link names, unless --url says otherwise; a bare token goes to --url or COFFER_URL.
        const at = url.lastIndexOf('/v1/intake/');
        const explicit =
          (cmd.opts() as { url?: string }).url !== undefined ||
          cmd.parent?.parent?.getOptionValueSource('url') === 'cli';
        const client = newClient(at > 0 && !explicit ? url.slice(0, at) : serverUrl(globalsOf(cmd)), {});
        const asked = await client.getIntake(token);
        note(`${asked.label} (for ${asked.name}${asked.format ? `, format ${describeFormat(asked.format)}` : ''})`);
        if (asked.help) note(asked.help);
        const value = await valueFrom(opts, asked.label);
        const received = await client.submitIntake(token, value);
        note(`Received: ${received.name} is stored. The link is now spent.`);
      }),
    [
      '$ coffer intake submit https://coffer.example.com/v1/intake/…',
      '$ printf %s "$KEY" | coffer intake submit https://coffer.example.com/v1/intake/…',
    ],
  );
}
