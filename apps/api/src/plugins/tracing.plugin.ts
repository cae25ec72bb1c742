import type { Tracer } from '@opentelemetry/api';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { traceRequests } from '../ops/tracing.ts';

/** A span per request when tracing is configured; without a tracer, no hook at all (and no cost). */
async function tracingPlugin(app: FastifyInstance, o: { tracer?: Tracer | undefined }): Promise<void> {
  if (o.tracer) traceRequests(app, o.tracer);
}

export const tracing = fp(tracingPlugin, { name: 'coffer-tracing', fastify: '5.x' });
