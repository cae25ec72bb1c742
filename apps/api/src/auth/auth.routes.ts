import type { FastifyInstance } from 'fastify';
import { mount } from '../http/mount.ts';
import { requestContext } from '../http/request-context.ts';
import type { AuthService } from './auth.service.ts';
import { principalOf } from './principal.ts';
import type { SigningKeys } from './signing-keys.ts';

export interface AuthRoutesOptions {
  service: AuthService;
  keys: SigningKeys;
}

export async function authRoutes(app: FastifyInstance, o: AuthRoutesOptions): Promise<void> {
  mount(app, 'issueToken', (request) => {
    const body = request.body;
    return 'subjectToken' in body
      ? o.service.exchangeToken(requestContext(request), body.identity, body.subjectToken, body.session)
      : o.service.issueToken(requestContext(request), body.clientId, body.clientSecret, body.session);
  });

  mount(app, 'whoami', async (request) => o.service.whoami(principalOf(request)));

  mount(app, 'jwks', async (_request, reply) => {
    reply.header('cache-control', 'public, max-age=300');
    return o.keys.jwkSet;
  });
}
