import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface Proc {
  child: ChildProcess;
  output: () => string;
  /** Peak resident set size seen since the last reset, in MB. */
  peakRssMb: () => number;
  rssMb: () => number;
  resetPeak: () => void;
  stop: () => Promise<number | null>;
}

function rssOf(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/** A child process whose memory is sampled every 250 ms. */
export function start(cmd: string, args: string[], env: Record<string, string>): Proc {
  const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (d) => {
    out = (out + d).slice(-20_000);
  });
  child.stderr?.on('data', (d) => {
    out = (out + d).slice(-20_000);
  });
  let peak = 0;
  const timer = setInterval(() => {
    if (child.pid) peak = Math.max(peak, rssOf(child.pid));
  }, 250);
  timer.unref();
  return {
    child,
    output: () => out,
    peakRssMb: () => peak,
    rssMb: () => (child.pid ? rssOf(child.pid) : 0),
    resetPeak: () => {
      peak = child.pid ? rssOf(child.pid) : 0;
    },
    stop: () =>
      new Promise((resolve) => {
        clearInterval(timer);
        if (child.exitCode !== null) return resolve(child.exitCode);
        child.once('exit', (code) => resolve(code));
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 15_000).unref();
      }),
  };
}

export async function waitFor(url: string, timeoutMs: number, proc?: Proc): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await fetch(url);
      if (res.ok) return;
    } catch {
      // not yet
    }
    if (proc && proc.child.exitCode !== null) throw new Error(`process exited early:\n${proc.output()}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${url}\n${proc?.output() ?? ''}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** CPU time a process has used in user space and in the kernel, in ms; 0 when it is gone. Linux /proc, 100 Hz. */
export function cpuSplitOf(pid: number | undefined): { user: number; system: number } {
  if (!pid) return { user: 0, system: 0 };
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { user: Number(fields[11]) * 10, system: Number(fields[12]) * 10 };
  } catch {
    return { user: 0, system: 0 };
  }
}

/**
 * CPU time of the bench's PostgreSQL (the postmaster `postmasterPid` and its processes; without it, every process
 * named `postgres` on this machine), in ms, including backends that have exited since: their time moves to the
 * postmaster's reaped-children counters (cutime, cstime), so the total never goes down when a pool closes a
 * connection.
 */
export function postgresCpuMs(postmasterPid?: number): number {
  let total = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim() !== 'postgres') continue;
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // On a shared machine other clusters run too: count only the bench's postmaster (with the children it has
      // reaped) and its live children, when it is known.
      const pid = Number(entry);
      const ppid = Number(fields[1]);
      if (postmasterPid !== undefined && pid !== postmasterPid && ppid !== postmasterPid) continue;
      total += (Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])) * 10;
    } catch {
      // exited meanwhile
    }
  }
  return total;
}
