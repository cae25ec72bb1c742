import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import type { MasterKey } from '../config.ts';

export interface WrappedKey {
  readonly wrapped: Buffer;
  readonly masterKeyId: string;
}

export class MissingMasterKeyError extends Error {
  constructor(readonly masterKeyId: string) {
    super(`master key "${masterKeyId}" is not in the keyring`);
  }
}

const IV_BYTES = 12;
const TAG_BYTES = 16;

/**
 * The master keyring. The first key wraps new data keys; every key can unwrap what it wrapped, so the master key
 * rotates online by re-wrapping data keys (no secret value is re-encrypted). Keys never leave this object.
 */
export class MasterKeyring {
  private readonly keys: ReadonlyMap<string, Buffer>;
  readonly activeId: string;

  constructor(keys: readonly MasterKey[]) {
    const first = keys[0];
    if (!first) throw new Error('the master keyring is empty');
    this.activeId = first.id;
    this.keys = new Map(keys.map((k) => [k.id, k.key]));
  }

  has(id: string): boolean {
    return this.keys.has(id);
  }

  get ids(): string[] {
    return [...this.keys.keys()];
  }

  /** AES-256-GCM; `context` (tenant and key version) is authenticated, so a wrapped key cannot be moved. */
  wrap(dataKey: Buffer, context: string): WrappedKey {
    const key = this.keys.get(this.activeId) as Buffer;
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', key, iv);
    cipher.setAAD(Buffer.from(context));
    const body = Buffer.concat([cipher.update(dataKey), cipher.final()]);
    return { wrapped: Buffer.concat([iv, body, cipher.getAuthTag()]), masterKeyId: this.activeId };
  }

  unwrap(w: WrappedKey, context: string): Buffer {
    const key = this.keys.get(w.masterKeyId);
    if (!key) throw new MissingMasterKeyError(w.masterKeyId);
    const iv = w.wrapped.subarray(0, IV_BYTES);
    const tag = w.wrapped.subarray(w.wrapped.length - TAG_BYTES);
    const body = w.wrapped.subarray(IV_BYTES, w.wrapped.length - TAG_BYTES);
    const decipher = createDecipheriv('aes-256-gcm', key, iv);
    decipher.setAAD(Buffer.from(context));
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(body), decipher.final()]);
  }

  /** A key for one purpose, derived (HKDF) from the active master key, so the raw key serves only wrapping. */
  derive(purpose: string): Buffer {
    return this.deriveFor(this.activeId, purpose);
  }

  /** The same derivation from a given master key (to check what an older key signed). */
  deriveFor(masterKeyId: string, purpose: string): Buffer {
    const key = this.keys.get(masterKeyId);
    if (!key) throw new MissingMasterKeyError(masterKeyId);
    return Buffer.from(hkdfSync('sha256', key, 'coffer', purpose, 32));
  }
}

export function dataKeyContext(tenantId: string, version: number): string {
  return `coffer/dek/v1/${tenantId}/${version}`;
}

export function fingerprintKeyContext(tenantId: string): string {
  return `coffer/fingerprint-key/v1/${tenantId}`;
}

export function newDataKey(): Buffer {
  return randomBytes(32);
}
