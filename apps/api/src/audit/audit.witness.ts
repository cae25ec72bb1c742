import { open, readFile } from 'node:fs/promises';

/** A signed checkpoint as the witness keeps it: enough to check its signature and compare it with the chain. */
export interface WitnessedCheckpoint {
  tenantId: string;
  seq: number;
  hash: Buffer;
  mac: Buffer;
  masterKeyId: string;
  createdAt: string;
}

/**
 * Where signed checkpoints are kept outside the database. Whoever controls the database (its owner, or whoever
 * restores an old backup) cannot take back what was exported here, so verify can tell a chain that is behind.
 */
export interface AuditWitness {
  append(c: WitnessedCheckpoint): Promise<void>;
  /** Every checkpoint witnessed for a tenant, in file order. */
  read(tenantId: string): Promise<WitnessedCheckpoint[]>;
}

interface Line {
  tenantId: string;
  seq: number;
  hash: string;
  mac: string;
  masterKeyId: string;
  createdAt: string;
}

/**
 * An append-only file of JSON lines, each fsync'd before the checkpoint goes into the database: a checkpoint the
 * database holds is always witnessed. Put it on storage the database's administrators cannot rewrite (another
 * host, an append-only mount, a log shipper). Lines that do not parse are skipped; their signatures are checked by
 * verify, so a line added by someone else proves nothing.
 */
export function fileWitness(path: string): AuditWitness {
  let tail: Promise<void> = Promise.resolve();
  return {
    append(c) {
      const line: Line = {
        tenantId: c.tenantId,
        seq: c.seq,
        hash: c.hash.toString('hex'),
        mac: c.mac.toString('hex'),
        masterKeyId: c.masterKeyId,
        createdAt: c.createdAt,
      };
      // One writer at a time within the process, so lines never interleave.
      const next = tail.then(async () => {
        const f = await open(path, 'a', 0o600);
        try {
          await f.write(`${JSON.stringify(line)}\n`);
          await f.sync();
        } finally {
          await f.close();
        }
      });
      tail = next.catch(() => undefined);
      return next;
    },

    async read(tenantId) {
      let text: string;
      try {
        text = await readFile(path, 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
        throw err;
      }
      const out: WitnessedCheckpoint[] = [];
      for (const raw of text.split('\n')) {
        if (!raw.includes(tenantId)) continue;
        try {
          const l = JSON.parse(raw) as Partial<Line>;
          if (
            l.tenantId !== tenantId ||
            typeof l.seq !== 'number' ||
            typeof l.hash !== 'string' ||
            typeof l.mac !== 'string' ||
            typeof l.masterKeyId !== 'string'
          )
            continue;
          out.push({
            tenantId,
            seq: l.seq,
            hash: Buffer.from(l.hash, 'hex'),
            mac: Buffer.from(l.mac, 'hex'),
            masterKeyId: l.masterKeyId,
            createdAt: String(l.createdAt),
          });
        } catch {
          // A torn or foreign line: skip it.
        }
      }
      return out;
    },
  };
}
