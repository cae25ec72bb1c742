import type { AuditJobs } from '../audit/audit.jobs.ts';
import type { Config } from '../config.ts';
import type { DataKeyService } from '../data-keys/data-keys.service.ts';
import type { LeaseRevoker } from '../dynamic/revocation.ts';
import type { RotationService } from '../rotation/rotation.service.ts';
import type { PurgeJob } from '../secrets/purge.job.ts';
import type { WebhookService } from '../webhooks/webhooks.service.ts';
import type { ReplicaRegistry } from './replica-registry.ts';
import type { Job } from './scheduler.ts';

/** What the jobs run; tests drive the same objects by hand through `app.jobs`. */
export interface JobHandles {
  purge: PurgeJob;
  audit: AuditJobs;
  rotation: RotationService;
  rekey: DataKeyService;
  webhooks: WebhookService;
  leases: LeaseRevoker;
}

/** Every background job of a replica, with its interval. */
export function backgroundJobs(
  h: JobHandles,
  replicas: Pick<ReplicaRegistry, 'beat'>,
  config: Pick<Config, 'schedulerIntervalMs' | 'schedulerEnabled'>,
): Job[] {
  return [
    // First, so the rate-limit share is right from the start.
    { name: 'replica-heartbeat', intervalMs: 5_000, run: () => replicas.beat() },
    { name: 'purge-deleted-secrets', intervalMs: 3_600_000, run: () => h.purge.runOnce() },
    { name: 'audit-checkpoints', intervalMs: 5 * 60_000, run: () => h.audit.checkpointAll() },
    { name: 'audit-retention', intervalMs: 24 * 3_600_000, run: () => h.audit.retainAll() },
    { name: 're-encrypt-data-keys', intervalMs: config.schedulerIntervalMs, run: () => h.rekey.rekeyAll() },
    { name: 'webhook-deliveries', intervalMs: 5_000, run: () => h.webhooks.deliverDue() },
    // Leases end on time to within this interval (their roles' VALID UNTIL stops new logins at the very second).
    {
      name: 'lease-expiry',
      intervalMs: Math.min(5_000, config.schedulerIntervalMs),
      run: () => h.leases.revokeDue(),
    },
    ...(config.schedulerEnabled
      ? [{ name: 'scheduled-rotations', intervalMs: config.schedulerIntervalMs, run: () => h.rotation.runDue() }]
      : []),
  ];
}
