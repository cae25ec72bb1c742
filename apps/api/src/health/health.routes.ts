import type { Readiness } from '@coffer/contracts';
import type { FastifyInstance } from 'fastify';
import { mount } from '../http/mount.ts';

export interface ReadinessCheck {
  name: string;
  run: () => Promise<{ ok: boolean; message?: string }>;
}

/** Liveness says the process answers; readiness says it can serve: each check must pass within the timeout. */
export async function healthRoutes(
  app: FastifyInstance,
  o: { checks: ReadinessCheck[]; timeoutMs?: number; onFailure?: (check: string, err: unknown) => void },
) {
  const timeoutMs = o.timeoutMs ?? 2_000;

  mount(app, 'health', async () => ({ status: 'ok' as const }));

  mount(app, 'ready', async (_request, reply) => {
    const checks = await Promise.all(
      o.checks.map(async (c): Promise<Readiness['checks'][number]> => {
        let timer: NodeJS.Timeout | undefined;
        try {
          const timeout = new Promise<{ ok: boolean; message: string }>((resolve) => {
            timer = setTimeout(() => resolve({ ok: false, message: `no answer within ${timeoutMs} ms` }), timeoutMs);
          });
          const r = await Promise.race([c.run(), timeout]);
          return { name: c.name, ok: r.ok, ...(r.message ? { message: r.message } : {}) };
        } catch (err) {
          // /readyz is unauthenticated: name the failure, not the database's address or error text.
          o.onFailure?.(c.name, err);
          const code = (err as { code?: unknown }).code;
          return { name: c.name, ok: false, message: `check failed${typeof code === 'string' ? ` (${code})` : ''}` };
        } finally {
          clearTimeout(timer);
        }
      }),
    );
    const ready = checks.every((c) => c.ok);
    // 503 is what load balancers and Kubernetes act on; the body says which check failed.
    reply.code(ready ? 200 : 503);
    return { status: ready ? 'ready' : 'not_ready', checks } as const;
  });
}
