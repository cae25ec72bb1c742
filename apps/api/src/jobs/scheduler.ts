import type { Logger } from 'pino';

export interface Job {
  name: string;
  intervalMs: number;
  run: () => Promise<unknown>;
}

/**
 * Runs background jobs on intervals (with ±10 % jitter so replicas drift apart), one run of a job at a time.
 * `stop` waits for runs in progress, so a graceful shutdown never cuts a job's transaction short.
 */
export class Scheduler {
  private timers = new Map<string, NodeJS.Timeout>();
  private running = new Set<Promise<unknown>>();
  private stopped = false;

  constructor(
    private readonly jobs: readonly Job[],
    private readonly log: Logger,
  ) {}

  start(initialDelayMs = 5_000): void {
    for (const job of this.jobs) this.schedule(job, initialDelayMs);
  }

  private schedule(job: Job, delay: number): void {
    if (this.stopped) return;
    const jittered = delay * (0.9 + Math.random() * 0.2);
    const timer = setTimeout(() => {
      const run = job
        .run()
        .catch((err) => this.log.error({ err, job: job.name }, 'background job failed'))
        .finally(() => {
          this.running.delete(run);
          this.schedule(job, job.intervalMs);
        });
      this.running.add(run);
    }, jittered);
    timer.unref();
    this.timers.set(job.name, timer);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    await Promise.allSettled([...this.running]);
  }
}
