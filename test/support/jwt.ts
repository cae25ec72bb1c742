import { createHmac, createPrivateKey, createPublicKey, type KeyObject, sign } from 'node:crypto';

/** Hand-made JWTs for attack tests: `base64url(header).base64url(payload).base64url(signature)`. */

export type JwtPart = Record<string, unknown>;

export const b64url = (data: Buffer | string): string => Buffer.from(data).toString('base64url');

export function encodePart(part: JwtPart): string {
  return b64url(JSON.stringify(part));
}

/** Signs `header.payload` with `signer`; a signer that returns null leaves the signature empty (`alg: none`). */
export function craftJwt(header: JwtPart, payload: JwtPart, signer: (data: Buffer) => Buffer | null): string {
  const signingInput = `${encodePart(header)}.${encodePart(payload)}`;
  const signature = signer(Buffer.from(signingInput));
  return `${signingInput}.${signature ? b64url(signature) : ''}`;
}

/** EdDSA over Ed25519 (node:crypto takes no digest for it). */
export const ed25519Signer =
  (privateKey: KeyObject | string) =>
  (data: Buffer): Buffer =>
    sign(null, data, typeof privateKey === 'string' ? createPrivateKey(privateKey) : privateKey);

export const hs256Signer =
  (secret: string | Buffer) =>
  (data: Buffer): Buffer =>
    createHmac('sha256', secret).update(data).digest();

export const unsigned = (): null => null;

export function decodeJwt(token: string): { header: JwtPart; payload: JwtPart; signature: string } {
  const [h, p, s] = token.split('.');
  if (h === undefined || p === undefined || s === undefined) throw new Error('not a JWT');
  return {
    header: JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as JwtPart,
    payload: JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as JwtPart,
    signature: s,
  };
}

/** The SPKI PEM of a private key's public half, exactly as a server would publish it. */
export function publicPemOf(privatePem: string): string {
  return createPublicKey(createPrivateKey(privatePem)).export({ format: 'pem', type: 'spki' }).toString();
}

export const nowSeconds = (): number => Math.floor(Date.now() / 1000);
