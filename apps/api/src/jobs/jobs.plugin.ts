import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { Logger } from 'pino';
import type { Config } from '../config.ts';
import { backgroundJobs, type JobHandles } from './background-jobs.ts';
import type { ReplicaRegistry } from './replica-registry.ts';
import { Scheduler } from './scheduler.ts';

export interface JobsOptions {
  handles: JobHandles;
  replicas: Pick<ReplicaRegistry, 'beat' | 'leave'>;
  config: Pick<Config, 'schedulerIntervalMs' | 'schedulerEnabled'>;
  log: Logger;
  /** Run the scheduler; tests leave it off and drive the jobs by hand. */
  start: boolean;
}

/** The replica's heartbeat and background jobs: started once the app is ready, stopped (runs finished) on close. */
async function jobsPlugin(app: FastifyInstance, o: JobsOptions): Promise<void> {
  app.decorate('jobs', o.handles);
  if (!o.start) return;
  const { replicas, log } = o;
  const scheduler = new Scheduler(backgroundJobs(o.handles, replicas, o.config), log);
  app.addHook('onReady', async () => {
    await replicas
      .beat()
      .catch((err) => log.warn({ err: { message: (err as Error).message } }, 'replica heartbeat failed'));
    scheduler.start(Math.min(5_000, o.config.schedulerIntervalMs));
  });
  app.addHook('onClose', async () => {
    await scheduler.stop();
    await replicas.leave().catch(() => undefined);
  });
}

export const jobs = fp(jobsPlugin, { name: 'coffer-jobs', fastify: '5.x' });
