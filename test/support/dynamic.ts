import { randomBytes } from 'node:crypto';
import { type CreatePostgresBackendRequest, LeaseCredentials, PostgresBackend } from '@coffer/contracts';
import type { FastifyInstance } from 'fastify';
import { expect } from 'vitest';
import { bearer } from './factories.ts';
import { READ_ITEMS, type TargetCorner } from './target-db.ts';

/**
 * Dynamic-credential fixtures: a backend configured through the API against a corner of the target database (its
 * admin URL stored as a Coffer secret first), and leases taken through the API.
 */
export interface TestBackend {
  name: string;
  /** Where the admin connection URL is kept. */
  secretPath: string;
  backend: PostgresBackend;
}

export async function createBackend(
  app: FastifyInstance,
  adminToken: string,
  corner: Pick<TargetCorner, 'adminUrl'>,
  o: Partial<CreatePostgresBackendRequest> & { secretPath?: string } = {},
): Promise<TestBackend> {
  const name = o.name ?? `db-${randomBytes(3).toString('hex')}`;
  const secretPath = o.secretPath ?? `shared/dynamic/ADMIN_URL_${randomBytes(3).toString('hex')}`;
  const put = await app.inject({
    method: 'PUT',
    url: `/v1/secrets/${secretPath}`,
    headers: bearer(adminToken),
    payload: { value: corner.adminUrl },
  });
  expect(put.statusCode, put.body).toBeLessThan(300);
  const { secretPath: _, ...rest } = o;
  const res = await app.inject({
    method: 'POST',
    url: '/v1/dynamic/postgres',
    headers: bearer(adminToken),
    payload: {
      name,
      connectionSecret: secretPath,
      ...READ_ITEMS,
      defaultTtlSeconds: 600,
      maxTtlSeconds: 3600,
      ...rest,
    },
  });
  expect(res.statusCode, res.body).toBe(201);
  return { name, secretPath, backend: PostgresBackend.parse(res.json()) };
}

export async function createLease(
  app: FastifyInstance,
  token: string,
  backend: string,
  body?: { ttlSeconds?: number; deployment?: string },
): Promise<LeaseCredentials> {
  const res = await app.inject({
    method: 'POST',
    url: `/v1/dynamic/${backend}/leases`,
    headers: bearer(token),
    ...(body ? { payload: body } : {}),
  });
  expect(res.statusCode, res.body).toBe(201);
  return LeaseCredentials.parse(res.json());
}
