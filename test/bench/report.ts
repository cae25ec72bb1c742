import type { StartupResult } from './cli-start.ts';

export interface ScenarioResult {
  name: string;
  description: string;
  rps: number;
  p50: number;
  p99: number;
  p999: number;
  errors: number;
  non2xx: number;
  peakRssMb: number;
  /**
   * CPU time per request: the server under test (API or baseline), PostgreSQL, and the load generator; and the
   * share of the server's spent in the kernel (sockets: every round trip to PostgreSQL is a send and a receive).
   */
  cpuUsPerRequest?: { server: number; serverKernelShare?: number; postgres: number; loadGenerator: number };
  /** Write-ahead log written per request (the audit trail makes even a read write): sizes disks and replicas. */
  walBytesPerRequest?: number;
  /** Ratios to baseline-http (throughput and p99), filled in at the end. */
  rpsRatio?: number;
  p99Ratio?: number;
  note?: string;
}

export interface BenchReport {
  date: string;
  machine: { cpus: number; cpuModel: string; memoryGb: number; node: string; postgres: string };
  settings: Record<string, unknown>;
  scenarios: ScenarioResult[];
  /** Process start-ups (the CLI beside a bare Node), timed from spawn to exit. */
  startup?: StartupResult[];
  /** The 1-minute load average when the start-ups began and ended (a shared host's other work shows in wall time). */
  startupLoad?: { before: number; after: number };
  extra: Record<string, unknown>;
  targets: { name: string; goal: string; measured: string; met: boolean }[];
}

const f = (n: number | undefined, d = 1) => (n === undefined || Number.isNaN(n) ? '–' : n.toFixed(d));

export function markdown(r: BenchReport): string {
  const lines = [
    `Machine: ${r.machine.cpus} × ${r.machine.cpuModel}, ${r.machine.memoryGb} GB, Node ${r.machine.node}, ${r.machine.postgres}; ${r.date}`,
    '',
    '| scenario | req/s | p50 ms | p99 ms | p99.9 ms | errors | non-2xx | peak RSS MB | × baseline req/s | × baseline p99 | CPU µs/req: server | Postgres | load gen | WAL B/req |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...r.scenarios.map(
      (s) =>
        `| ${s.name} | ${f(s.rps, 0)} | ${f(s.p50)} | ${f(s.p99)} | ${f(s.p999)} | ${s.errors} | ${s.non2xx} | ${f(s.peakRssMb, 0)} | ${f(s.rpsRatio, 2)} | ${f(s.p99Ratio, 2)} | ${f(s.cpuUsPerRequest?.server, 0)}${s.cpuUsPerRequest?.serverKernelShare !== undefined ? ` (${Math.round(s.cpuUsPerRequest.serverKernelShare * 100)} % kernel)` : ''} | ${f(s.cpuUsPerRequest?.postgres, 0)} | ${f(s.cpuUsPerRequest?.loadGenerator, 0)} | ${f(s.walBytesPerRequest, 0)} |`,
    ),
    ...(r.startup?.length
      ? [
          '',
          '| start-up | runs | median ms | p90 ms | min ms | CPU ms/run | what |',
          '|---|---:|---:|---:|---:|---:|---|',
          ...r.startup.map(
            (s) =>
              `| ${s.name} | ${s.runs} | ${f(s.medianMs)} | ${f(s.p90Ms)} | ${f(s.minMs)} | ${f(s.cpuMs, 0)} | ${s.description} |`,
          ),
          ...(r.startupLoad
            ? [
                '',
                `Load average (1 min) during the start-ups: ${f(r.startupLoad.before, 2)} → ${f(r.startupLoad.after, 2)}.`,
              ]
            : []),
        ]
      : []),
    '',
    '| target | goal | measured | met |',
    '|---|---|---|---|',
    ...r.targets.map((t) => `| ${t.name} | ${t.goal} | ${t.measured} | ${t.met ? 'yes' : 'no'} |`),
  ];
  const notes = r.scenarios.filter((s) => s.note).map((s) => `- ${s.name}: ${s.note}`);
  if (notes.length) lines.push('', ...notes);
  const extra = Object.entries(r.extra).map(([k, v]) => `- ${k}: ${typeof v === 'number' ? f(v, 2) : String(v)}`);
  if (extra.length) lines.push('', ...extra);
  return `${lines.join('\n')}\n`;
}

/** Two horizontal bar charts (throughput, p99) as one self-contained SVG. */
export function svgChart(r: BenchReport): string {
  const rows = r.scenarios;
  const barH = 18;
  const gap = 6;
  const left = 170;
  const width = 420;
  const panelH = rows.length * (barH + gap) + 40;
  const maxRps = Math.max(...rows.map((s) => s.rps), 1);
  const maxP99 = Math.max(...rows.map((s) => s.p99), 1);
  const esc = (s: string) => s.replace(/[<>&"]/g, (c) => `&#${c.charCodeAt(0)};`);
  const panel = (
    title: string,
    y0: number,
    value: (s: ScenarioResult) => number,
    max: number,
    unit: string,
    color: string,
  ) =>
    [
      `<text x="10" y="${y0 + 16}" font-weight="bold">${esc(title)}</text>`,
      ...rows.map((s, i) => {
        const y = y0 + 28 + i * (barH + gap);
        const w = Math.max(1, (value(s) / max) * width);
        return [
          `<text x="${left - 8}" y="${y + 13}" text-anchor="end">${esc(s.name)}</text>`,
          `<rect x="${left}" y="${y}" width="${w.toFixed(1)}" height="${barH}" fill="${color}"/>`,
          `<text x="${left + w + 6}" y="${y + 13}">${esc(f(value(s), unit === 'req/s' ? 0 : 1))} ${unit}</text>`,
        ].join('');
      }),
    ].join('\n');
  const h = panelH * 2 + 20;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${left + width + 120}" height="${h}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    panel('Throughput (higher is better)', 0, (s) => s.rps, maxRps, 'req/s', '#3b7dd8'),
    panel('p99 latency (lower is better)', panelH + 10, (s) => s.p99, maxP99, 'ms', '#d8743b'),
    '</svg>',
    '',
  ].join('\n');
}
