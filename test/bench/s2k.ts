// Measures pgcrypto's per-call cost of each S2K option inside PostgreSQL (no round trips), to choose on numbers.
// Run: npx tsx test/bench/s2k.ts   (uses BENCH_DATABASE_URL, else a throwaway embedded PostgreSQL)
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startEmbeddedPostgres } from '../../apps/api/src/db/embedded.ts';

export interface S2kResult {
  options: string;
  encryptMicros: number;
  decryptMicros: number;
}

export const S2K_OPTIONS = [
  'cipher-algo=aes256, compress-algo=0, s2k-mode=3',
  'cipher-algo=aes256, compress-algo=0, s2k-mode=1, s2k-digest-algo=sha1',
  'cipher-algo=aes256, compress-algo=0, s2k-mode=1, s2k-digest-algo=sha256',
  'cipher-algo=aes256, compress-algo=0, s2k-mode=0, s2k-digest-algo=sha256',
];

export async function measureS2k(url: string, n = 2000): Promise<S2kResult[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const key = randomBytes(32).toString('hex');
  const value = `coffer:v1:${'0'.repeat(36)}:${'0'.repeat(36)}:1\n${randomBytes(48).toString('base64')}`;
  const results: S2kResult[] = [];
  try {
    await client.query('create extension if not exists pgcrypto');
    for (const options of S2K_OPTIONS) {
      // Warm up, then time N calls inside one statement.
      await client.query('select count(pgp_sym_encrypt($1, $2, $3)) from generate_series(1, 50)', [
        value,
        key,
        options,
      ]);
      let t = process.hrtime.bigint();
      await client.query('select count(pgp_sym_encrypt($1, $2, $3)) from generate_series(1, $4)', [
        value,
        key,
        options,
        n,
      ]);
      const encryptMicros = Number(process.hrtime.bigint() - t) / 1000 / n;
      // pgp_sym_decrypt is immutable: over one constant it would run once, so decrypt N distinct ciphertexts.
      await client.query('drop table if exists s2k_sample');
      await client.query(
        'create temp table s2k_sample as select pgp_sym_encrypt($1, $2, $3) as c from generate_series(1, $4)',
        [value, key, options, n],
      );
      t = process.hrtime.bigint();
      await client.query('select count(pgp_sym_decrypt(c, $1)) from s2k_sample', [key]);
      const decryptMicros = Number(process.hrtime.bigint() - t) / 1000 / n;
      results.push({ options, encryptMicros, decryptMicros });
    }
  } finally {
    await client.end();
  }
  return results;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  let url = process.env.BENCH_DATABASE_URL;
  let stop: (() => Promise<void>) | undefined;
  if (!url) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'coffer-s2k-'));
    const server = await startEmbeddedPostgres({
      dir,
      port: 30_000 + Math.floor(Math.random() * 10_000),
      ephemeral: true,
    });
    url = server.url;
    stop = async () => {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    };
  }
  try {
    for (const r of await measureS2k(url)) {
      process.stdout.write(
        `${r.options.padEnd(72)} encrypt ${r.encryptMicros.toFixed(1).padStart(7)} µs  decrypt ${r.decryptMicros.toFixed(1).padStart(7)} µs\n`,
      );
    }
  } finally {
    await stop?.();
  }
}
