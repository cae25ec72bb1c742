import 'vitest';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Owner (migrations) URL of the test database. */
    ownerDatabaseUrl: string;
    /** The restricted query role's URL: what the API connects with. */
    appDatabaseUrl: string;
    /** Keyring `id:base64` made at test time. */
    masterKeys: string;
    /** Ed25519 private key PEM made at test time. */
    jwtPrivateKeyPem: string;
    /** The platform admin's client secret, made at test time. */
    rootSecret: string;
    /** Superuser URL of a second PostgreSQL, where dynamic credentials make their roles. */
    targetDatabaseUrl: string;
  }
}
