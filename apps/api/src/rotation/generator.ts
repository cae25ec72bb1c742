import { randomInt } from 'node:crypto';
import type { Generator } from '@coffer/contracts';

const ALPHABETS: Record<Generator['charset'], string> = {
  alphanumeric: 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789',
  hex: '0123456789abcdef',
  base64url: 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_',
  'ascii-printable': Array.from({ length: 94 }, (_, i) => String.fromCharCode(33 + i)).join(''),
};

/** A new value from the CSPRNG: each character drawn uniformly (randomInt rejects biased draws). */
export function generateValue(g: Generator): string {
  const alphabet = ALPHABETS[g.charset];
  let out = g.prefix ?? '';
  for (let i = 0; i < g.length; i++) out += alphabet[randomInt(alphabet.length)];
  return out;
}
