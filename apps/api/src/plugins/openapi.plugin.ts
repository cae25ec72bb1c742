import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { jsonSchemaTransform, jsonSchemaTransformObject } from 'fastify-type-provider-zod';
import { finishOpenApiDocument } from '../http/openapi-document.ts';

/**
 * OpenAPI 3.1 from the routes' zod schemas, with Swagger UI at /docs. Registered before any route, since the
 * document is collected as routes are added.
 */
async function openApiPlugin(app: FastifyInstance, o: { servedOverTls: boolean }): Promise<void> {
  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Coffer API',
        version: '1',
        description:
          'Multi-tenant secrets service. Authenticate with POST /v1/auth/token, then send the token as a Bearer header.',
        license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
      },
      // Relative: the document is served by the server it describes, whatever address the caller reached it at.
      servers: [{ url: '/', description: 'the server that serves this document' }],
      components: { securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } },
    },
    transform: jsonSchemaTransform,
    transformObject: (input) => finishOpenApiDocument(jsonSchemaTransformObject(input)),
  });
  await app.register(fastifySwaggerUi, {
    routePrefix: '/docs',
    staticCSP: true,
    // Swagger UI's own policy asks for https:// too: over plain HTTP the page would load none of its scripts.
    transformStaticCSP: (policy) =>
      o.servedOverTls ? policy : policy.replace(/\s*upgrade-insecure-requests;?/, '').trim(),
  });
}

/** GET /openapi.json; registered after the error handler, so even its failures answer the envelope. */
async function openApiDocumentPlugin(app: FastifyInstance): Promise<void> {
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
}

export const openApi = fp(openApiPlugin, { name: 'coffer-openapi', fastify: '5.x' });
export const openApiDocument = fp(openApiDocumentPlugin, {
  name: 'coffer-openapi-document',
  fastify: '5.x',
  dependencies: ['coffer-openapi'],
});
