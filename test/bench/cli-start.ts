// Start-up of the `coffer` CLI beside a bare Node start, measured as hyperfine does (warm-up runs, then N timed
// runs, median and p90), with the cases interleaved run by run so that they all see the same load on a shared host.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

export interface StartupResult {
  name: string;
  description: string;
  runs: number;
  medianMs: number;
  p90Ms: number;
  minMs: number;
  /**
   * Mean CPU time (user + system) of the process and its children per run, where the OS says (Linux): on a shared
   * host the wall-clock figures carry everyone else's load, this does not.
   */
  cpuMs?: number;
}

export interface StartupCase {
  name: string;
  description: string;
  /** Resolves when the run is over; rejects if it failed. */
  run: () => Promise<void>;
}

/** CPU time of this process's waited-for children so far (Linux: cutime + cstime in /proc/self/stat), or null. */
function childrenCpuMs(): number | null {
  try {
    const fields = readFileSync('/proc/self/stat', 'utf8').split(')').pop()?.trim().split(' ') ?? [];
    // Fields 16 and 17 of proc(5), counted from `state` (field 3); in clock ticks of 10 ms on Linux.
    return (Number(fields[13]) + Number(fields[14])) * 10;
  } catch {
    return null;
  }
}

const quantile = (sorted: number[], q: number) =>
  sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? 0;

/** A case that spawns `file args` and waits for it to exit 0. */
export function processCase(
  name: string,
  description: string,
  file: string,
  args: string[],
  env: Record<string, string>,
): StartupCase {
  return {
    name,
    description,
    run: () =>
      new Promise((resolve, reject) => {
        const child = spawn(file, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
        let stderr = '';
        child.stderr.on('data', (d: Buffer) => {
          stderr += d.toString();
        });
        child.on('error', reject);
        child.on('close', (code) =>
          code === 0 ? resolve() : reject(new Error(`${name} exited with ${code}: ${stderr.slice(0, 500)}`)),
        );
      }),
  };
}

export async function timeCases(cases: StartupCase[], runs: number, warmup = 3): Promise<StartupResult[]> {
  const times = cases.map(() => [] as number[]);
  const cpu = cases.map(() => 0);
  let cpuKnown = childrenCpuMs() !== null;
  for (let i = 0; i < warmup + runs; i++) {
    for (const [k, c] of cases.entries()) {
      const cpu0 = childrenCpuMs();
      const t0 = process.hrtime.bigint();
      await c.run();
      if (i < warmup) continue;
      times[k]?.push(Number(process.hrtime.bigint() - t0) / 1e6);
      const cpu1 = childrenCpuMs();
      if (cpu0 === null || cpu1 === null) cpuKnown = false;
      else cpu[k] = (cpu[k] ?? 0) + cpu1 - cpu0;
    }
  }
  return cases.map((c, k) => {
    const sorted = (times[k] ?? []).sort((a, b) => a - b);
    return {
      name: c.name,
      description: c.description,
      runs,
      medianMs: quantile(sorted, 0.5),
      p90Ms: quantile(sorted, 0.9),
      minMs: sorted[0] ?? 0,
      ...(cpuKnown && (cpu[k] ?? 0) > 0 ? { cpuMs: (cpu[k] ?? 0) / runs } : {}),
    };
  });
}
