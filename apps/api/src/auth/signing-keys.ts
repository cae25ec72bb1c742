import { createHash, createPublicKey, type KeyObject } from 'node:crypto';

export interface PublicJwk {
  kty: 'OKP';
  crv: 'Ed25519';
  x: string;
  kid: string;
  alg: 'EdDSA';
  use: 'sig';
}

/** RFC 7638 thumbprint: a stable key id that anyone holding the public key can recompute. */
function thumbprint(x: string): string {
  return createHash('sha256').update(`{"crv":"Ed25519","kty":"OKP","x":"${x}"}`).digest('base64url');
}

function toJwk(key: KeyObject): PublicJwk {
  const jwk = key.export({ format: 'jwk' }) as { x?: string };
  if (!jwk.x) throw new Error('not an Ed25519 public key');
  return { kty: 'OKP', crv: 'Ed25519', x: jwk.x, kid: thumbprint(jwk.x), alg: 'EdDSA', use: 'sig' };
}

/**
 * The token signing key and the public keys that verify. One algorithm (EdDSA); the active key signs, earlier
 * keys only verify, so tokens signed before a key rotation stay valid until they expire.
 */
export class SigningKeys {
  readonly kid: string;
  readonly privatePem: string;
  private readonly publicPems = new Map<string, string>();
  private readonly jwks: PublicJwk[] = [];

  constructor(privateKey: KeyObject, previousPublicKeys: readonly KeyObject[] = []) {
    this.privatePem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    const active = createPublicKey(privateKey);
    for (const pub of [active, ...previousPublicKeys]) {
      const jwk = toJwk(pub);
      if (this.publicPems.has(jwk.kid)) continue;
      this.publicPems.set(jwk.kid, pub.export({ format: 'pem', type: 'spki' }).toString());
      this.jwks.push(jwk);
    }
    this.kid = toJwk(active).kid;
  }

  publicPemFor(kid: string): string | undefined {
    return this.publicPems.get(kid);
  }

  get jwkSet(): { keys: PublicJwk[] } {
    return { keys: [...this.jwks] };
  }
}
