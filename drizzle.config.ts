import { defineConfig } from 'drizzle-kit';

export default defineConfig({
  dialect: 'postgresql',
  schema: './apps/api/src/db/schema.ts',
  out: './drizzle',
  schemaFilter: ['coffer'],
  dbCredentials: { url: process.env.DATABASE_URL ?? 'postgres://localhost/coffer' },
});
