// biome-ignore-all assist/source/organizeImports: the load order of these modules is the wire format (see below)
export * from './audit.ts';
export * from './auth.ts';
export * from './common.ts';
export * from './errors.ts';
export * from './formats.ts';
export * from './health.ts';
export * from './identities.ts';
export * from './patterns.ts';
export * from './rotation.ts';
// Out of order on purpose: the order modules load is the order of the components in /openapi.json, and these two
// were part of rotation.ts when the document was published.
export * from './data-keys.ts';
export * from './webhooks.ts';
export * from './routes.ts';
export * from './secrets.ts';
export * from './sessions.ts';
export * from './tenants.ts';
export * from './trust.ts';
export * from './version.ts';
export * from './environment-slug.ts';
export * from './environments.ts';
export * from './intake.ts';
export * from './deployments.ts';
export * from './consumers.ts';
export * from './inventory.ts';
// Last, so that the components published before dynamic credentials keep their order in /openapi.json.
export * from './dynamic.ts';
