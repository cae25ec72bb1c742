/**
 * Finishing touches on the generated OpenAPI document, so that linters and generators read it as written: every
 * response described by its status instead of Fastify's "Default Response", and no component that nothing refers to
 * (the zod provider emits an input and an output variant of every registered schema, used or not).
 */

type Json = Record<string, unknown>;

/** What each status means in this API, for responses whose schema says nothing more. */
const STATUS_DESCRIPTIONS: Record<string, string> = {
  200: 'OK',
  201: 'Created',
  202: 'Accepted: the work goes on in the background',
  204: 'No content',
  400: 'validation_failed: the request does not match the schema',
  401: 'unauthorized: no valid bearer token',
  403: 'forbidden: the token may not perform this action',
  404: 'not_found: no such resource in the caller’s tenant',
  409: 'conflict: the resource exists or changed meanwhile',
  413: 'payload_too_large: the body is larger than the server accepts',
  415: 'unsupported_media_type: send the body as application/json',
  429: 'rate_limited: retry after the number of seconds in Retry-After',
  500: 'internal: an error with no detail, logged on the server with the request id',
  503: 'unavailable: a dependency is down or the server is shutting down; retry after Retry-After',
};

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

function describeResponses(paths: Json): void {
  for (const item of Object.values(paths)) {
    if (!isObject(item)) continue;
    for (const operation of Object.values(item)) {
      if (!isObject(operation) || !isObject(operation.responses)) continue;
      for (const [status, response] of Object.entries(operation.responses)) {
        if (isObject(response) && response.description === 'Default Response') {
          response.description = STATUS_DESCRIPTIONS[status] ?? `HTTP ${status}`;
        }
      }
    }
  }
}

/** Names of the component schemas reachable from `root` through `$ref`s, following refs inside components too. */
function referencedSchemas(root: unknown, schemas: Json): Set<string> {
  const seen = new Set<string>();
  const prefix = '#/components/schemas/';
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) for (const n of node) walk(n);
    else if (isObject(node)) {
      const ref = node.$ref;
      if (typeof ref === 'string' && ref.startsWith(prefix)) {
        const name = decodeURIComponent(ref.slice(prefix.length));
        if (!seen.has(name)) {
          seen.add(name);
          walk(schemas[name]);
        }
      }
      for (const [k, v] of Object.entries(node)) if (k !== '$ref') walk(v);
    }
  };
  walk(root);
  return seen;
}

export function finishOpenApiDocument<D>(document: D): D {
  const doc = document as unknown as Json;
  if (isObject(doc.paths)) describeResponses(doc.paths);
  const components = doc.components;
  if (isObject(components) && isObject(components.schemas)) {
    const schemas = components.schemas;
    const used = referencedSchemas(doc.paths, schemas);
    components.schemas = Object.fromEntries(Object.entries(schemas).filter(([name]) => used.has(name)));
  }
  return document;
}
