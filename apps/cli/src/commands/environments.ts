import { type CofferClient, CofferError, parseOwnerPath } from '@coffer/sdk';
import type { Command } from 'commander';
import { checkEnvironment, connect } from '../context.ts';
import { CliError, EXIT, json, note, out, styleFor, table, usageError } from '../output.ts';
import { examples, globalsOf, nonNegativeInt } from './common.ts';

const collect = (value: string, previous: string[] = []) => [...previous, value];

const slugArg = (name: string) => (raw: string) => checkEnvironment(raw, name);

const NAME_VERSION = /^([^=]+)=(.*)$/;

/** `--expect NAME=version`, repeated, as the body's `expect` map (0: the name must not exist in the target). */
export function expectMap(pairs: string[] | undefined): Record<string, number> | undefined {
  if (!pairs || pairs.length === 0) return undefined;
  const map: Record<string, number> = Object.create(null);
  for (const p of pairs) {
    const m = NAME_VERSION.exec(p);
    if (!m) throw usageError(`--expect takes NAME=version, not "${p}"`);
    const name = m[1] as string;
    if (Object.hasOwn(map, name)) throw usageError(`--expect names ${name} twice`);
    map[name] = nonNegativeInt(`--expect ${name}`)(m[2] as string);
  }
  return { ...map };
}

async function showEnvironments(client: CofferClient, asJson: boolean): Promise<void> {
  const r = await client.call('listEnvironments');
  if (asJson) return json(r.items);
  const s = styleFor(process.stdout);
  out(
    table(
      r.items.map((e) => [
        e.slug,
        e.name,
        e.protected ? s.yellow('protected') : '',
        e.default ? 'default' : '',
        e.createdAt,
      ]),
      ['SLUG', 'NAME', 'PROTECTED', 'DEFAULT', 'CREATED'].map(s.bold),
    ),
  );
}

export function registerEnvironments(program: Command): void {
  const env = program
    .command('env')
    .summary('Environments: ls, create, update, rm, diff, promote')
    .description(
      'Environments (development, staging, production, …): the second coordinate of every secret. Other commands ' +
        'work in one with --env <slug> or COFFER_ENV; without either, in the tenant default.',
    );

  examples(
    env
      .command('ls')
      .description('The environments of your tenant (a service sees those its policies apply in).')
      .option('--json', 'print as JSON')
      .action(async (opts: { json?: boolean }, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        await showEnvironments(client, opts.json === true);
      }),
    ['$ coffer env ls'],
  );

  examples(
    env
      .command('create')
      .description('Add an environment (tenant admin). It grants nothing until a policy names it.')
      .argument('<slug>', '1-63 lower-case letters, digits, _ or -')
      .requiredOption('--name <name>', 'a display name')
      .option('--protected', 'writes only by promotion or from admins')
      .option('--json', 'print as JSON')
      .action(async (slug: string, opts: { name: string; protected?: boolean; json?: boolean }, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        const e = await client.call('createEnvironment', {
          body: {
            slug: checkEnvironment(slug, 'the slug'),
            name: opts.name,
            ...(opts.protected ? { protected: true } : {}),
          },
        });
        if (opts.json) return json(e);
        note(`Created ${e.slug} (${e.name})${e.protected ? ', protected' : ''}.`);
      }),
    ['$ coffer env create staging --name Staging', '$ coffer env create production --name Production --protected'],
  );

  examples(
    env
      .command('update')
      .description('Rename an environment, or protect it (writes then only by promotion or from admins).')
      .argument('<slug>', 'the environment')
      .option('--name <name>', 'a new display name')
      .option('--protected', 'protect it')
      .option('--no-protected', 'stop protecting it')
      .option('--json', 'print as JSON')
      .action(async (slug: string, opts: { name?: string; protected?: boolean; json?: boolean }, cmd: Command) => {
        if (opts.name === undefined && opts.protected === undefined)
          throw usageError('give --name, --protected or --no-protected');
        const { client } = connect(globalsOf(cmd));
        const e = await client.call('updateEnvironment', {
          params: { slug: checkEnvironment(slug, 'the slug') },
          body: {
            ...(opts.name !== undefined ? { name: opts.name } : {}),
            ...(opts.protected !== undefined ? { protected: opts.protected } : {}),
          },
        });
        if (opts.json) return json(e);
        note(`Updated ${e.slug} (${e.name})${e.protected ? ', protected' : ', not protected'}.`);
      }),
    ['$ coffer env update production --protected', '$ coffer env update staging --name "Staging (EU)"'],
  );

  examples(
    env
      .command('rm')
      .description('Remove an environment that holds no secret (deleted ones count until purged); default stays.')
      .argument('<slug>', 'the environment')
      .action(async (slug: string, _opts: unknown, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        await client.call('deleteEnvironment', { params: { slug: checkEnvironment(slug, 'the slug') } });
        note(`Removed ${slug}.`);
      }),
    ['$ coffer env rm preview-42'],
  );

  examples(
    env
      .command('diff')
      .description(
        'Which names of an owner are the same, different, or only on one side between two environments, and ' +
          'whether the format or rotation policy differs. Compared by keyed fingerprints: no value is shown or ' +
          'sent. Needs only list on both sides. Exit 0 whatever the differences (use --json to act on them).',
      )
      .argument('<from>', 'an environment')
      .argument('<to>', 'another environment')
      .argument('<kind/owner>', 'e.g. shared/payments')
      .option('--json', 'print as JSON')
      .action(async (from: string, to: string, ownerPath: string, opts: { json?: boolean }, cmd: Command) => {
        const o = parseOwnerPath(ownerPath);
        const { client } = connect(globalsOf(cmd));
        const r = await client.call('diffEnvironments', {
          query: { from: slugArg('<from>')(from), to: slugArg('<to>')(to), kind: o.kind, owner: o.owner },
        });
        if (opts.json) return json(r);
        if (r.items.length === 0) return note(`${ownerPath} has no secrets in ${from} or ${to}.`);
        const s = styleFor(process.stdout);
        const paint = (state: string) =>
          state === 'same' ? s.green(state) : state === 'different' ? s.yellow(state) : s.red(state);
        out(
          table(
            r.items.map((i) => [
              i.name,
              paint(i.state),
              i.fromVersion === null ? '-' : String(i.fromVersion),
              i.toVersion === null ? '-' : String(i.toVersion),
              i.formatDiffers ? s.yellow('differs') : '',
              i.rotationDiffers ? s.yellow('differs') : '',
            ]),
            ['NAME', 'STATE', from.toUpperCase(), to.toUpperCase(), 'FORMAT', 'ROTATION'].map(s.bold),
          ),
        );
      }),
    [
      '$ coffer env diff staging production shared/payments',
      '$ coffer env diff staging production shared/payments --json | jq -r \'.items[] | select(.state != "same") | .name\'',
    ],
  );

  examples(
    env
      .command('promote')
      .description(
        'Copy the current values of <from> into <to> in one transaction (every live name of the owner, or the ' +
          '--name ones). --expect NAME=version is a compare-and-set on <to> (0: must not exist there): if any ' +
          'name is stale, nothing changes, every stale name is printed and the exit code is 1. A name whose value ' +
          'is already the same keeps its version. Needs read in <from> and write in <to>.',
      )
      .argument('<from>', 'the environment to copy from')
      .argument('<to>', 'the environment to copy into')
      .argument('<kind/owner>', 'e.g. shared/payments')
      .option('--name <name>', 'promote only this name (repeat it)', collect)
      .option('--expect <NAME=version>', 'the version NAME must have in <to> (repeat it)', collect)
      .option('--json', 'print as JSON')
      .action(
        async (
          from: string,
          to: string,
          ownerPath: string,
          opts: { name?: string[]; expect?: string[]; json?: boolean },
          cmd: Command,
        ) => {
          const o = parseOwnerPath(ownerPath);
          const expect = expectMap(opts.expect);
          const { client } = connect(globalsOf(cmd));
          let r: Awaited<ReturnType<typeof client.call<'promoteEnvironment'>>>;
          try {
            r = await client.call('promoteEnvironment', {
              body: {
                from: slugArg('<from>')(from),
                to: slugArg('<to>')(to),
                kind: o.kind,
                owner: o.owner,
                ...(opts.name && opts.name.length > 0 ? { names: opts.name } : {}),
                ...(expect ? { expect } : {}),
              },
            });
          } catch (e) {
            if (!(e instanceof CofferError) || e.code !== 'conflict') throw e;
            const stale = e.details.filter((d) => d.path.startsWith('expect.'));
            const s = styleFor(process.stderr);
            for (const d of stale)
              process.stderr.write(`${s.red('stale')} ${d.path.slice('expect.'.length)}: ${d.message}\n`);
            throw new CliError(
              `nothing was promoted: ${stale.map((d) => d.path.slice('expect.'.length)).join(', ') || 'a name'} ${stale.length === 1 ? 'is' : 'are'} stale in ${to} (${e.message})`,
              EXIT.failure,
            );
          }
          if (opts.json) return json(r);
          const s = styleFor(process.stdout);
          if (r.items.length > 0)
            out(
              table(
                r.items.map((i) => [
                  i.name,
                  String(i.fromVersion),
                  `${i.previousToVersion ?? '-'} → ${i.toVersion}`,
                  i.changed ? s.green('promoted') : s.dim('already the same'),
                ]),
                ['NAME', from.toUpperCase(), to.toUpperCase(), 'RESULT'].map(s.bold),
              ),
            );
          const changed = r.items.filter((i) => i.changed).length;
          note(`Promoted ${changed} of ${r.items.length} names of ${ownerPath} from ${from} to ${to}.`);
        },
      ),
    [
      '$ coffer env promote staging production shared/payments',
      '$ coffer env promote staging production shared/payments --name STRIPE_KEY --expect STRIPE_KEY=1',
    ],
    'Exit codes: 0 promoted, 1 a stale name (nothing changed) or a failure, 2 usage, 3 not found, 4 denied.',
  );
}
