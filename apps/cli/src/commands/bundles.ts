import { readFileSync, writeFileSync } from 'node:fs';
import { parseOwnerPath } from '@coffer/sdk';
import type { Command } from 'commander';
import { connect } from '../context.ts';
import { EXPORT_FORMATS, type ExportFormat, parseEnvFile, serialise } from '../envfile.ts';
import { refuseLoaderEnv } from '../loader-env.ts';
import { CliError, EXIT, json, note, out, Progress, styleFor, usageError } from '../output.ts';
import { readStdin } from '../prompt.ts';
import { examples, globalsOf } from './common.ts';

/** The server applies at most this many names in one atomic bundle write. */
const BATCH = 1000;

function formatArg(raw: string): ExportFormat {
  if ((EXPORT_FORMATS as readonly string[]).includes(raw)) return raw as ExportFormat;
  throw usageError(`--format must be one of ${EXPORT_FORMATS.join(', ')}, not "${raw}"`);
}

export interface ImportPlan {
  create: string[];
  update: string[];
  unchanged: string[];
  /** In the bundle but not in the file: left as they are. */
  untouched: string[];
}

export function registerBundles(program: Command): void {
  examples(
    program
      .command('export')
      .summary('Write a bundle as dotenv, JSON, YAML or shell')
      .description(
        "Write a bundle's values as dotenv, JSON, YAML or shell exports. Every format is checked to read back as " +
          'exactly the stored values (quotes, =, newlines, unicode, empty values) before anything is written.',
      )
      .requiredOption('--bundle <kind/owner>', 'the bundle, e.g. sandbox/sbx-42')
      .option('--format <format>', EXPORT_FORMATS.join(' | '), formatArg, 'dotenv')
      .option('--output <file>', 'write to this file (created with mode 0600) instead of standard output')
      .option('--allow-empty', 'write even a bundle with no secrets this identity may read')
      .option(
        '--allow-env <name>',
        'shell and dotenv: write this variable even though it changes how processes load code; repeat it',
        (v: string, prev: string[] = []) => [...prev, v],
      )
      .option('--allow-loader-env', 'shell and dotenv: write every such variable the bundle holds')
      .action(
        async (
          opts: {
            bundle: string;
            format: ExportFormat;
            output?: string;
            allowEmpty?: boolean;
            allowEnv?: string[];
            allowLoaderEnv?: boolean;
          },
          cmd: Command,
        ) => {
          const owner = parseOwnerPath(opts.bundle);
          const { client } = connect(globalsOf(cmd));
          const progress = new Progress(`export ${opts.bundle}`);
          progress.update('reading the bundle…', true);
          const bundle = await client.getBundle(owner.kind, owner.owner);
          if (Object.keys(bundle.values).length === 0 && !opts.allowEmpty) {
            progress.done();
            throw new CliError(
              `${opts.bundle} has no secrets this identity may read (check the name and the policies, or pass --allow-empty)`,
              EXIT.notFound,
            );
          }
          // Shell exports exist to be eval'd and .env files to be sourced or loaded into a process: the same names
          // that coffer run refuses would change how that shell and everything it starts load code.
          if (opts.format === 'shell' || opts.format === 'dotenv') {
            try {
              refuseLoaderEnv(Object.keys(bundle.values), opts.bundle, opts);
            } catch (e) {
              progress.done();
              throw e;
            }
          }
          progress.update(`writing ${Object.keys(bundle.values).length} secrets…`, true);
          const text = serialise(bundle.values, opts.format);
          progress.done();
          if (opts.output) {
            writeFileSync(opts.output, text, { mode: 0o600 });
            note(
              `Wrote ${Object.keys(bundle.values).length} secrets of ${opts.bundle} to ${opts.output} (${opts.format}).`,
            );
          } else out(text);
        },
      ),
    [
      '$ coffer export --bundle sandbox/sbx-42 --format dotenv --output .env',
      '$ coffer export --bundle sandbox/sbx-42 --format json | jq keys',
      '$ eval "$(coffer export --bundle sandbox/sbx-42 --format shell)"',
    ],
  );

  examples(
    program
      .command('import')
      .summary('Import a .env file into a bundle')
      .argument('<file>', 'a .env file ("-" for standard input)')
      .description(
        'Write the values of a .env file into a bundle, each with compare-and-set against what was read, up to ' +
          '1000 names atomically. --dry-run shows what would be created, changed or left alone, never a value.',
      )
      .requiredOption('--bundle <kind/owner>', 'the bundle, e.g. sandbox/sbx-42')
      .option('--dry-run', 'show what would change and write nothing')
      .option('--json', 'print the plan (names only) as JSON')
      .action(async (file: string, opts: { bundle: string; dryRun?: boolean; json?: boolean }, cmd: Command) => {
        const owner = parseOwnerPath(opts.bundle);
        let text: string;
        try {
          text = file === '-' ? await readStdin() : readFileSync(file, 'utf8');
        } catch (e) {
          throw usageError(`cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
        }
        const values = parseEnvFile(text, file === '-' ? 'standard input' : file);
        const { client } = connect(globalsOf(cmd));
        const progress = new Progress(`import ${opts.bundle}`);
        progress.update('reading the bundle…', true);
        const current = await client.getBundle(owner.kind, owner.owner);
        const plan: ImportPlan = { create: [], update: [], unchanged: [], untouched: [] };
        for (const [name, value] of Object.entries(values)) {
          if (!(name in current.versions)) plan.create.push(name);
          else if (current.values[name] !== value) plan.update.push(name);
          else plan.unchanged.push(name);
        }
        plan.untouched = Object.keys(current.versions).filter((n) => !(n in values));
        for (const list of Object.values(plan)) list.sort();
        progress.done();

        if (opts.dryRun) {
          if (opts.json) return json({ dryRun: true, bundle: opts.bundle, ...plan });
          const s = styleFor(process.stdout);
          for (const n of plan.create) out(`${s.green('+')} ${n}  (new)\n`);
          for (const n of plan.update)
            out(
              `${s.yellow('~')} ${n}  (changed: version ${current.versions[n]} → ${(current.versions[n] ?? 0) + 1})\n`,
            );
          for (const n of plan.unchanged) out(`${s.dim('=')} ${n}  (unchanged)\n`);
          for (const n of plan.untouched) out(`${s.dim(' ')} ${n}  (not in the file: left as it is)\n`);
          note(
            `Dry run: ${plan.create.length} to create, ${plan.update.length} to change, ${plan.unchanged.length} unchanged in ${opts.bundle}. Nothing was written.`,
          );
          return;
        }

        const names = [...plan.create, ...plan.update];
        const versions: Record<string, number | null> = {};
        for (let i = 0; i < names.length; i += BATCH) {
          const batch = names.slice(i, i + BATCH);
          progress.update(`writing ${i + batch.length}/${names.length}…`, true);
          const set = Object.fromEntries(
            batch.map((n) => [n, { value: values[n] as string, ifVersion: current.versions[n] ?? 0 }]),
          );
          const res = await client.writeBundle(owner.kind, owner.owner, { set });
          Object.assign(versions, res.versions);
        }
        progress.done();
        if (opts.json) json({ dryRun: false, bundle: opts.bundle, ...plan, versions });
        note(
          `Imported into ${opts.bundle}: ${plan.create.length} created, ${plan.update.length} changed, ${plan.unchanged.length} unchanged.`,
        );
      }),
    [
      '$ coffer import .env --bundle sandbox/sbx-42 --dry-run',
      '$ coffer import .env --bundle sandbox/sbx-42',
      '$ heroku config --shell | coffer import - --bundle sandbox/sbx-42',
    ],
  );
}
