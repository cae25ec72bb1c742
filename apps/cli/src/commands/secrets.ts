import { readFileSync } from 'node:fs';
import { BuiltinFormat, CustomFormat, type SecretFormat, SecretKind, type SecretMetadata } from '@coffer/contracts';
import { formatSecretPath, parseSecretPath } from '@coffer/sdk';
import type { Command } from 'commander';
import { connect } from '../context.ts';
import { describeFormat } from '../formats.ts';
import { json, note, out, type Style, styleFor, table, usageError } from '../output.ts';
import { promptHidden, promptLine, readStdin } from '../prompt.ts';
import { examples, globalsOf, nonNegativeInt, positiveInt } from './common.ts';
import { type MetadataOptions, metadataFields, metadataOptions } from './metadata.ts';

const pathOf = (m: Pick<SecretMetadata, 'kind' | 'owner' | 'name'>) => `${m.kind}/${m.owner}/${m.name}`;

function versionArg(raw: string): number | 'previous' {
  if (raw === 'previous') return raw;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw usageError(`--version must be a version number or "previous", not "${raw}"`);
  return n;
}

export function formatArg(raw: string): SecretFormat | null {
  if (raw === 'none') return null;
  const builtin = BuiltinFormat.safeParse(raw);
  if (builtin.success) return builtin.data;
  if (raw.trim().startsWith('{')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      throw usageError('--format: the custom format is not valid JSON');
    }
    const custom = CustomFormat.safeParse(parsed);
    if (custom.success) return custom.data;
    throw usageError(
      `--format: ${custom.error.issues.map((i) => `${i.path.join('.') || 'format'}: ${i.message}`).join('; ')}`,
    );
  }
  throw usageError(
    `--format must be one of ${BuiltinFormat.options.join(', ')}, "none", or a JSON custom format like '{"pattern":"^[a-z]+$"}'`,
  );
}

/** A value from --value, --from-file, standard input (one trailing newline dropped) or a prompt, in that order. */
export async function valueFrom(opts: { value?: string; fromFile?: string }, what: string): Promise<string> {
  if (opts.value !== undefined && opts.fromFile !== undefined)
    throw usageError('give --value or --from-file, not both');
  if (opts.value !== undefined) return opts.value;
  if (opts.fromFile !== undefined) {
    try {
      return readFileSync(opts.fromFile === '-' ? 0 : opts.fromFile, 'utf8');
    } catch (e) {
      throw usageError(`cannot read ${opts.fromFile} (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  }
  if (!process.stdin.isTTY) {
    const value = (await readStdin()).replace(/\r?\n$/, '');
    // An empty pipe is far more often a mistake (an unset variable, a missing file) than an intended empty secret.
    if (value === '') throw usageError("standard input was empty; to store an empty value say so: --value ''");
    return value;
  }
  return promptHidden(`${what}: `);
}

/** An expired secret must not look healthy in a list: say so, in red on a terminal. */
function expiryCell(expiresAt: string | null, s: Style): string {
  if (expiresAt === null) return '';
  return Date.parse(expiresAt) <= Date.now() ? s.red(`expired ${expiresAt}`) : expiresAt;
}

function lsFilter(prefix: string | undefined): { kind?: SecretKind; owner?: string; prefix?: string } {
  if (!prefix) return {};
  const [kind, owner, name, ...rest] = prefix.split('/');
  if (rest.length > 0) throw usageError(`"${prefix}" has too many parts: kind[/owner[/name-prefix]]`);
  const k = SecretKind.safeParse(kind);
  if (!k.success) throw usageError(`the kind must be one of ${SecretKind.options.join(', ')}, not "${kind}"`);
  return { kind: k.data, ...(owner ? { owner } : {}), ...(name ? { prefix: name } : {}) };
}

export function registerSecrets(program: Command): void {
  examples(
    program
      .command('get')
      .summary("Print a secret's value")
      .argument('<path>', 'kind/owner/name, e.g. sandbox/sbx-42/DB_URL')
      .description("Print a secret's value (exactly, with a newline only on a terminal), or all of it with --json.")
      .option('--version <n>', 'an older version number, or "previous"', versionArg)
      .option('--json', 'print value and metadata as JSON')
      .action(async (path: string, opts: { version?: number | 'previous'; json?: boolean }, cmd: Command) => {
        const p = parseSecretPath(path);
        const { client } = connect(globalsOf(cmd));
        const secret = await client.getSecret(p, opts.version !== undefined ? { version: opts.version } : {});
        if (opts.json) return json(secret);
        out(process.stdout.isTTY ? `${secret.value}\n` : secret.value);
      }),
    [
      '$ coffer get sandbox/sbx-42/DB_URL',
      '$ coffer get sandbox/sbx-42/DB_URL --version previous',
      '$ coffer get sandbox/sbx-42/TLS_KEY > tls.key',
      '$ coffer get sandbox/sbx-42/DB_URL --json | jq .version',
    ],
  );

  const set = program
    .command('set')
    .summary('Create a secret or add a version')
    .argument('<path>', 'kind/owner/name')
    .description(
      'Create a secret or add a version. The value comes from --value, --from-file, standard input (one ' +
        'trailing newline dropped) or a prompt that does not echo.',
    )
    .option('--value <value>', 'the value (visible in shell history and the process list: prefer stdin)')
    .option('--from-file <file>', 'read the value from a file, byte for byte ("-" for stdin, kept exactly)')
    .option(
      '--format <format>',
      `a format the value must satisfy: ${BuiltinFormat.options.join(', ')}, a JSON custom format, or "none"`,
      formatArg,
    )
    .option(
      '--if-version <n>',
      'compare-and-set: 0 = must not exist yet, n = the current version must be n',
      nonNegativeInt('--if-version'),
    )
    .option('--description <text>', 'what the secret is for');
  metadataOptions(set)
    .option('--json', 'print the new metadata as JSON')
    .action(
      async (
        path: string,
        opts: MetadataOptions & {
          value?: string;
          fromFile?: string;
          format?: SecretFormat | null;
          ifVersion?: number;
          description?: string;
          json?: boolean;
        },
        cmd: Command,
      ) => {
        const p = parseSecretPath(path);
        const fields = metadataFields(opts);
        const { client } = connect(globalsOf(cmd));
        const value = await valueFrom(opts, `Value for ${path}`);
        const meta = await client.putSecret(p, value, {
          ...fields,
          ...(opts.format !== undefined ? { format: opts.format } : {}),
          ...(opts.ifVersion !== undefined ? { ifVersion: opts.ifVersion } : {}),
          ...(opts.description !== undefined ? { description: opts.description } : {}),
        });
        if (opts.json) json(meta);
        note(meta.version === 1 ? `Created ${path} (version 1).` : `Updated ${path}: now version ${meta.version}.`);
      },
    );
  examples(set, [
    '$ coffer set sandbox/sbx-42/DB_URL --format postgres-url < db-url.txt',
    '$ coffer set sandbox/sbx-42/SESSION_KEY --value "$(openssl rand -hex 32)" --rotate-every 30d --generator hex:64',
    '$ coffer set sandbox/sbx-42/TRIAL_KEY --expires 30d --tag team=growth --tag env=staging',
    '$ printf %s "$STRIPE_KEY" | coffer set sandbox/sbx-42/STRIPE_KEY --format stripe-secret-key',
    '$ coffer set sandbox/sbx-42/TLS_KEY --from-file tls.key --format pem-private-key',
    '$ coffer set sandbox/sbx-42/FEATURE_FLAGS --value \'{"beta":true}\' --format json --if-version 3',
  ]);

  examples(
    program
      .command('ls')
      .summary('List secrets (never values)')
      .argument('[prefix]', 'kind, kind/owner or kind/owner/name-prefix')
      .description('List secrets (metadata only, never values), across every page.')
      .option('--deleted', 'list soft-deleted secrets (restorable with coffer restore) instead of live ones')
      .option('--json', 'print as a JSON array')
      .action(async (prefix: string | undefined, opts: { json?: boolean; deleted?: boolean }, cmd: Command) => {
        const filter = lsFilter(prefix);
        const { client } = connect(globalsOf(cmd));
        const items = await client
          .listSecrets({ ...filter, ...(opts.deleted ? { deleted: 'true' as const } : {}), limit: 500 })
          .all();
        if (opts.json) return json(items);
        const what = opts.deleted ? 'deleted secrets' : 'secrets';
        if (items.length === 0) return note(prefix ? `No ${what} under ${prefix}.` : `No ${what}.`);
        if (opts.deleted) note('Deleted, restorable with: coffer restore <path>');
        const s = styleFor(process.stdout);
        out(
          table(
            items.map((m) => [
              pathOf(m),
              String(m.version),
              describeFormat(m.format),
              m.updatedAt,
              expiryCell(m.expiresAt, s),
              m.nextRotationAt ?? '',
            ]),
            ['PATH', 'VERSION', 'FORMAT', 'UPDATED', 'EXPIRES', 'NEXT ROTATION'].map(s.bold),
          ),
        );
      }),
    [
      '$ coffer ls',
      '$ coffer ls sandbox/sbx-42',
      '$ coffer ls sandbox/sbx-42/STRIPE_',
      '$ coffer ls shared --json | jq length',
      '$ coffer ls sandbox/sbx-42 --deleted             # what coffer restore can bring back',
    ],
  );

  examples(
    program
      .command('rm')
      .summary('Delete a secret (restorable) or erase it')
      .argument('<path>', 'kind/owner/name')
      .description(
        'Delete a secret: restorable with `coffer restore` for the recovery window, or erased now with --purge.',
      )
      .option('--purge', 'erase every version for good (asks first on a terminal)')
      .option('--yes', 'do not ask (needed for --purge without a terminal)')
      .action(async (path: string, opts: { purge?: boolean; yes?: boolean }, cmd: Command) => {
        const p = parseSecretPath(path);
        if (opts.purge && !opts.yes) {
          if (!process.stdin.isTTY) throw usageError('--purge erases every version for good: add --yes to confirm');
          const answer = await promptLine(
            `Erase every version of ${path} for good? Type the name (${p.name}) to confirm: `,
          );
          if (answer !== p.name) throw usageError('not confirmed; nothing was erased');
        }
        const { client } = connect(globalsOf(cmd));
        await client.deleteSecret(p, { purge: opts.purge === true });
        note(opts.purge ? `Erased ${path}.` : `Deleted ${path} (restore it with: coffer restore ${path}).`);
      }),
    ['$ coffer rm sandbox/sbx-42/OLD_TOKEN', '$ coffer rm sandbox/sbx-42/LEAKED_KEY --purge --yes'],
  );

  examples(
    program
      .command('restore')
      .summary('Undo a delete')
      .argument('<path>', 'kind/owner/name')
      .description('Undo a delete within the recovery window.')
      .option('--json', 'print the metadata as JSON')
      .action(async (path: string, opts: { json?: boolean }, cmd: Command) => {
        const p = parseSecretPath(path);
        const { client } = connect(globalsOf(cmd));
        const meta = await client.restoreSecret(p);
        if (opts.json) json(meta);
        note(`Restored ${formatSecretPath(p)} at version ${meta.version}.`);
      }),
    ['$ coffer restore sandbox/sbx-42/OLD_TOKEN'],
  );

  examples(
    program
      .command('history')
      .summary('The versions of a secret')
      .argument('<path>', 'kind/owner/name')
      .description('The versions of a secret, newest first: when, by whom, and whether each is still readable.')
      .option('--json', 'print as JSON')
      .action(async (path: string, opts: { json?: boolean }, cmd: Command) => {
        const p = parseSecretPath(path);
        const { client } = connect(globalsOf(cmd));
        const versions = await client.secretVersions(p);
        if (opts.json) return json(versions.items);
        const s = styleFor(process.stdout);
        out(
          table(
            versions.items.map((v) => [
              String(v.version),
              v.state === 'current' ? s.green(v.state) : v.state === 'destroyed' ? s.red(v.state) : v.state,
              v.createdAt,
              // The author's name, or its id once the identity is gone.
              v.createdByName ?? v.createdBy ?? '',
              v.servedUntil ? `served until ${v.servedUntil}` : '',
            ]),
            ['VERSION', 'STATE', 'CREATED', 'BY', 'NOTE'].map(s.bold),
          ),
        );
      }),
    ['$ coffer history sandbox/sbx-42/DB_URL', '$ coffer history sandbox/sbx-42/DB_URL --json | jq ".[0].version"'],
  );

  examples(
    program
      .command('rotate')
      .summary('Make a new current version')
      .argument('<path>', 'kind/owner/name')
      .description(
        "Make a new current version from --value, --from-file, or (with neither) the secret's generator. The " +
          'previous version stays readable for the grace period.',
      )
      .option('--value <value>', 'the new value')
      .option('--from-file <file>', 'read the new value from a file ("-" for stdin)')
      .option('--notes <text>', 'why, for the rotation log (never a value)')
      .option('--json', 'print the new metadata as JSON')
      .action(
        async (
          path: string,
          opts: { value?: string; fromFile?: string; notes?: string; json?: boolean },
          cmd: Command,
        ) => {
          const p = parseSecretPath(path);
          const { client } = connect(globalsOf(cmd));
          const value =
            opts.value !== undefined || opts.fromFile !== undefined ? await valueFrom(opts, 'New value') : undefined;
          const meta = await client.rotate(p, {
            ...(value !== undefined ? { value } : {}),
            ...(opts.notes !== undefined ? { notes: opts.notes } : {}),
          });
          if (opts.json) json(meta);
          note(`Rotated ${path}: now version ${meta.version}.`);
        },
      ),
    [
      "$ coffer rotate sandbox/sbx-42/SESSION_KEY                 # the secret's generator makes the value",
      '$ coffer rotate sandbox/sbx-42/STRIPE_KEY --from-file new-key.txt',
    ],
  );

  const update = program
    .command('update')
    .summary("Change a secret's metadata (no new version)")
    .argument('<path>', 'kind/owner/name')
    .description(
      'Change metadata only — description, format, tags, expiry, rotation schedule — without a new version. ' +
        'Only the options given change.',
    )
    .option('--description <text>', 'what the secret is for ("" clears it)')
    .option('--format <format>', 'a built-in format, a JSON custom format, or "none"', formatArg)
    .option('--no-rotation', 'remove the rotation schedule');
  examples(
    metadataOptions(update)
      .option('--json', 'print the metadata as JSON')
      .action(
        async (
          path: string,
          opts: MetadataOptions & { description?: string; format?: SecretFormat | null; json?: boolean },
          cmd: Command,
        ) => {
          const p = parseSecretPath(path);
          const patch = {
            ...metadataFields(opts),
            ...(opts.description !== undefined
              ? { description: opts.description === '' ? null : opts.description }
              : {}),
            ...(opts.format !== undefined ? { format: opts.format } : {}),
          };
          if (Object.keys(patch).length === 0) throw usageError('nothing to change: give at least one option');
          const { client } = connect(globalsOf(cmd));
          const meta = await client.patchSecret(p, patch);
          if (opts.json) json(meta);
          note(`Updated the metadata of ${path} (still version ${meta.version}).`);
        },
      ),
    [
      '$ coffer update sandbox/sbx-42/SESSION_KEY --rotate-every 30d --generator base64url:43',
      '$ coffer update sandbox/sbx-42/TRIAL_KEY --expires none --tag team=growth',
      '$ coffer update sandbox/sbx-42/OLD_KEY --no-rotation',
    ],
  );

  examples(
    program
      .command('destroy')
      .summary("Erase one old version's value for good")
      .argument('<path>', 'kind/owner/name')
      .requiredOption('--version <n>', 'the version to erase (not the current one)', positiveInt('--version'))
      .option('--yes', 'do not ask (needed without a terminal)')
      .description("Erase one version's ciphertext for good; the secret and its other versions stay.")
      .action(async (path: string, opts: { version: number; yes?: boolean }, cmd: Command) => {
        const p = parseSecretPath(path);
        if (!opts.yes) {
          if (!process.stdin.isTTY) throw usageError('destroy erases a version for good: add --yes to confirm');
          const answer = await promptLine(`Erase version ${opts.version} of ${path} for good? Type yes: `);
          if (answer !== 'yes') throw usageError('not confirmed; nothing was erased');
        }
        const { client } = connect(globalsOf(cmd));
        await client.call('destroySecretVersion', { params: { ...p, version: opts.version } });
        note(`Erased version ${opts.version} of ${path}.`);
      }),
    ['$ coffer destroy sandbox/sbx-42/LEAKED_KEY --version 3 --yes'],
  );
}
