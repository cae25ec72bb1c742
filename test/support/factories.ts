import { randomBytes } from 'node:crypto';
import type {
  CreateIdentityRequest,
  CreateIdentityResponse,
  CreateTenantResponse,
  Identity,
  TokenResponse,
} from '@coffer/contracts';
import type { FastifyInstance } from 'fastify';
import { inject } from 'vitest';

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

export async function login(app: FastifyInstance, clientId: string, clientSecret: string): Promise<string> {
  const res = await app.inject({ method: 'POST', url: '/v1/auth/token', payload: { clientId, clientSecret } });
  if (res.statusCode !== 200) throw new Error(`login of ${clientId} failed: ${res.statusCode} ${res.body}`);
  return (res.json() as TokenResponse).accessToken;
}

export const rootToken = (app: FastifyInstance) => login(app, 'root', inject('rootSecret'));

export const uniqueSlug = (prefix = 't') => `${prefix}-${randomBytes(6).toString('hex')}`;

export interface TestTenant {
  tenant: CreateTenantResponse['tenant'];
  admin: CreateTenantResponse['admin'];
  adminToken: string;
}

/** A fresh tenant with its first admin logged in: every test makes its own, so tests never share state. */
export async function createTenant(app: FastifyInstance, root?: string): Promise<TestTenant> {
  const token = root ?? (await rootToken(app));
  const res = await app.inject({
    method: 'POST',
    url: '/v1/tenants',
    headers: bearer(token),
    payload: { slug: uniqueSlug(), name: 'Test tenant' },
  });
  if (res.statusCode !== 201) throw new Error(`tenant creation failed: ${res.statusCode} ${res.body}`);
  const body = res.json() as CreateTenantResponse;
  return { ...body, adminToken: await login(app, body.admin.clientId, body.admin.clientSecret) };
}

export interface TestIdentity {
  identity: Identity;
  clientSecret: string;
  token: string;
}

export async function createIdentity(
  app: FastifyInstance,
  adminToken: string,
  body: Partial<CreateIdentityRequest> & Pick<CreateIdentityRequest, 'role'>,
): Promise<TestIdentity> {
  const res = await app.inject({
    method: 'POST',
    url: '/v1/identities',
    headers: bearer(adminToken),
    payload: { name: `${body.role}-${randomBytes(3).toString('hex')}`, ...body },
  });
  if (res.statusCode !== 201) throw new Error(`identity creation failed: ${res.statusCode} ${res.body}`);
  const created = res.json() as CreateIdentityResponse;
  return { ...created, token: await login(app, created.identity.clientId, created.clientSecret) };
}
