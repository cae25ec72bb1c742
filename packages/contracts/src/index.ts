export * from './auth.ts';
export * from './common.ts';
export * from './errors.ts';
export * from './health.ts';
export * from './identities.ts';
export * from './routes.ts';
export * from './secrets.ts';
export * from './tenants.ts';
