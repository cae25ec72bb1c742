import { createWriteStream } from 'node:fs';
import { finished } from 'node:stream/promises';
import { type AuditEventView, AuditOutcome } from '@coffer/contracts';
import { type Command, Option } from 'commander';
import { connect, REQUEST_ID_PREFIX } from '../context.ts';
import { CliError, EXIT, json, note, out, Progress, styleFor, table, usageError } from '../output.ts';
import { examples, globalsOf, positiveInt, timeArg } from './common.ts';

interface AuditOptions {
  actor?: string;
  action?: string;
  path?: string;
  outcome?: AuditOutcome;
  since?: string;
  until?: string;
  limit: number;
  follow?: boolean;
  json?: boolean;
}

function outcomeArg(raw: string): AuditOutcome {
  const o = AuditOutcome.safeParse(raw);
  if (!o.success) throw usageError(`--outcome must be one of ${AuditOutcome.options.join(', ')}`);
  return o.data;
}

function printEvents(events: AuditEventView[], asJson: boolean): void {
  if (asJson) {
    for (const e of events) out(`${JSON.stringify(e)}\n`);
    return;
  }
  const s = styleFor(process.stdout);
  const rows = events.map((e) => [
    e.occurredAt,
    e.outcome === 'allowed' ? s.green(e.outcome) : s.red(e.outcome),
    e.action,
    `${e.resource ?? ''}${e.version !== null ? `@${e.version}` : ''}`,
    e.actorName ?? e.actorId ?? '',
    e.errorCode ?? '',
  ]);
  if (rows.length > 0) out(table(rows));
}

/** This process's own requests (its first page, the follow session) would otherwise show up in what it follows. */
const isOwnRequest = (e: AuditEventView) =>
  (e.action === 'audit.query' || e.action === 'audit.follow') && (e.requestId ?? '').startsWith(REQUEST_ID_PREFIX);

export function registerAudit(program: Command): void {
  const audit = examples(
    program
      .command('audit')
      .summary('Audit events; verify the chain; export')
      .description(
        'Audit events of your tenant (admin or auditor), oldest first, newest at the bottom; --follow keeps ' +
          'printing new ones until interrupted. With --json, one JSON event per line.',
      )
      .option('--actor <identity-id>', 'only this identity')
      .option('--action <action>', 'an action (secrets.read) or a prefix ending in a dot (secrets.)')
      .option('--path <prefix>', 'a resource path or its prefix (sandbox/sbx-42/)')
      .option('--outcome <outcome>', AuditOutcome.options.join(' | '), outcomeArg)
      .option('--since <time>', 'a duration (15m, 24h, 7d) or a timestamp', timeArg('--since'))
      .option('--until <time>', 'a duration or a timestamp', timeArg('--until'))
      .option('--limit <n>', 'how many of the newest events to show first', positiveInt('--limit'), 20)
      .option('--follow', 'keep printing new events as they are committed (Ctrl-C to stop)')
      // Kept so existing scripts still run: the server now pushes events, there is nothing to poll.
      .addOption(new Option('--interval <seconds>', 'ignored').hideHelp())
      .option('--json', 'one JSON object per line')
      .action(async (opts: AuditOptions, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        const query = {
          ...(opts.actor ? { actor: opts.actor } : {}),
          ...(opts.action ? { action: opts.action } : {}),
          ...(opts.path ? { path: opts.path } : {}),
          ...(opts.outcome ? { outcome: opts.outcome } : {}),
          ...(opts.since ? { from: opts.since } : {}),
          ...(opts.until ? { to: opts.until } : {}),
        };
        const first = await client.call('queryAudit', { query: { ...query, limit: Math.min(opts.limit, 1000) } });
        const initial = [...first.items].reverse();
        printEvents(initial, opts.json === true);
        if (!opts.follow) {
          if (initial.length === 0 && !opts.json) note('No audit events match.');
          return;
        }
        // Streamed by the server (one audit event per session, not one per poll), from the newest event shown, or
        // from the tenant's newest event when nothing matched yet.
        const stop = new AbortController();
        process.once('SIGINT', () => stop.abort());
        process.once('SIGTERM', () => stop.abort());
        const { from: _from, to: _to, ...filters } = query;
        const after = first.items[0]?.seq;
        for await (const e of client.followAudit(
          { ...filters, ...(after !== undefined ? { after } : {}) },
          { signal: stop.signal },
        )) {
          if (!isOwnRequest(e)) printEvents([e], opts.json === true);
        }
      }),
    [
      '$ coffer audit --since 24h',
      '$ coffer audit --path sandbox/sbx-42/ --outcome denied',
      '$ coffer audit --action secrets. --follow',
      '$ coffer audit verify',
      '$ coffer audit export --format csv --since 30d --output audit.csv',
    ],
  );

  examples(
    audit
      .command('verify')
      .summary('Check the audit hash chain')
      .description('Check the hash chain and its signed checkpoints; exit 1 and name the first broken link if any.')
      .option('--since <time>', 'a duration or a timestamp', timeArg('--since'))
      .option('--until <time>', 'a duration or a timestamp', timeArg('--until'))
      .option('--json', 'print the result as JSON')
      .action(async (opts: { since?: string; until?: string; json?: boolean }, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        const r = await client.verifyAudit({
          ...(opts.since ? { from: opts.since } : {}),
          ...(opts.until ? { to: opts.until } : {}),
        });
        if (opts.json) json(r);
        if (!r.ok) {
          throw new CliError(
            `the audit chain is broken at event ${r.firstBrokenId ?? '?'} (seq ${r.firstBrokenSeq ?? '?'}): ${r.reason ?? 'unknown'}${r.message ? ` — ${r.message}` : ''}`,
            EXIT.failure,
          );
        }
        if (!opts.json) out(`ok: ${r.checked} events and ${r.checkpoints} signed checkpoints verified\n`);
      }),
    ['$ coffer audit verify', '$ coffer audit verify --since 7d --json'],
  );

  examples(
    audit
      .command('export')
      .summary('Stream every event as NDJSON or CSV')
      .description('Stream every event (oldest first) as NDJSON or CSV, without holding the log in memory.')
      .option(
        '--format <format>',
        'ndjson | csv',
        (raw: string) => {
          if (raw !== 'ndjson' && raw !== 'csv') throw usageError('--format must be ndjson or csv');
          return raw;
        },
        'ndjson',
      )
      .option('--since <time>', 'a duration or a timestamp', timeArg('--since'))
      .option('--until <time>', 'a duration or a timestamp', timeArg('--until'))
      .option('--output <file>', 'write to this file instead of standard output')
      .action(
        async (opts: { format: 'ndjson' | 'csv'; since?: string; until?: string; output?: string }, cmd: Command) => {
          const { client } = connect(globalsOf(cmd));
          const exported = await client.exportAudit({
            format: opts.format,
            ...(opts.since ? { from: opts.since } : {}),
            ...(opts.until ? { to: opts.until } : {}),
          });
          const sink: NodeJS.WritableStream = opts.output
            ? createWriteStream(opts.output, { mode: 0o600 })
            : process.stdout;
          const progress = new Progress('audit export');
          let lines = 0;
          let bytes = 0;
          for await (const chunk of exported.body as unknown as AsyncIterable<Uint8Array>) {
            bytes += chunk.byteLength;
            for (const b of chunk) if (b === 10) lines++;
            if (!sink.write(chunk)) await new Promise<void>((r) => sink.once('drain', () => r()));
            progress.update(`${lines} lines, ${(bytes / 1024).toFixed(0)} KiB`);
          }
          progress.done();
          if (opts.output) {
            sink.end();
            await finished(sink as ReturnType<typeof createWriteStream>);
            note(`Wrote ${opts.format === 'csv' ? lines - 1 : lines} events to ${opts.output}.`);
          }
        },
      ),
    ['$ coffer audit export > audit.ndjson', '$ coffer audit export --format csv --since 30d --output audit.csv'],
  );

  examples(
    audit
      .command('summary')
      .summary('Counts by action, outcome and actor')
      .description('Counts by action, outcome and actor over a time range, and which secrets each identity read.')
      .option('--since <time>', 'a duration or a timestamp', timeArg('--since'))
      .option('--until <time>', 'a duration or a timestamp', timeArg('--until'))
      .option('--json', 'print as JSON')
      .action(async (opts: { since?: string; until?: string; json?: boolean }, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        const r = await client.call('auditSummary', {
          query: { ...(opts.since ? { from: opts.since } : {}), ...(opts.until ? { to: opts.until } : {}) },
        });
        if (opts.json) return json(r);
        const s = styleFor(process.stdout);
        out(`${s.bold('total')}  ${r.total}\n\n`);
        out(
          table(
            Object.entries(r.byOutcome).map(([k, v]) => [k, String(v)]),
            ['OUTCOME', 'EVENTS'].map(s.bold),
          ),
        );
        out('\n');
        out(
          table(
            Object.entries(r.byAction).map(([k, v]) => [k, String(v)]),
            ['ACTION', 'EVENTS'].map(s.bold),
          ),
        );
        out('\n');
        out(
          table(
            r.byActor.map((a) => [a.actorName ?? a.actorId ?? '(none)', String(a.total), String(a.denied)]),
            ['ACTOR', 'EVENTS', 'DENIED'].map(s.bold),
          ),
        );
      }),
    ['$ coffer audit summary --since 7d', '$ coffer audit summary --since 24h --json | jq .byOutcome'],
  );
}
