import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { type Config, type MasterKey, parseJwtPrivateKey, parseKeyring } from './config.ts';

interface DevKeyFile {
  masterKeys: string;
  jwtPrivateKey: string;
}

/**
 * Development only: keys that were not configured are generated once into `<data dir>/dev-keys.json`
 * (mode 0600) and reused on later starts. Production never reaches this (config refuses to start without keys).
 */
export function withDevelopmentKeys(config: Config, log: Logger): Config {
  if (config.masterKeys && config.jwtPrivateKey) return config;
  if (config.env === 'production') throw new Error('refusing to generate keys in production');
  const file = path.join(config.dataDir, 'dev-keys.json');
  let keys: DevKeyFile;
  if (existsSync(file)) {
    keys = JSON.parse(readFileSync(file, 'utf8')) as DevKeyFile;
  } else {
    mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
    keys = {
      masterKeys: `dev1:${randomBytes(32).toString('base64')}`,
      jwtPrivateKey: generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    };
    writeFileSync(file, `${JSON.stringify(keys, null, 2)}\n`, { mode: 0o600 });
    chmodSync(file, 0o600);
    log.warn({ file }, 'generated development keys (never use them in production)');
  }
  const problems: string[] = [];
  const masterKeys: MasterKey[] | null = config.masterKeys
    ? [...config.masterKeys]
    : parseKeyring(keys.masterKeys, file, problems);
  const jwtPrivateKey = config.jwtPrivateKey ?? parseJwtPrivateKey(keys.jwtPrivateKey, file, problems);
  if (problems.length > 0 || !masterKeys || !jwtPrivateKey) {
    throw new Error(`${file} is damaged (${problems.join('; ')}); delete it to generate new development keys`);
  }
  return { ...config, masterKeys, jwtPrivateKey };
}
