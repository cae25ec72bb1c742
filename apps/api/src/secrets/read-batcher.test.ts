import { describe, expect, it } from 'vitest';
import { ReadBatcher, type ReadCall } from './read-batcher.ts';

const call = (name: string): ReadCall => ({
  identityId: 'i',
  revision: 1,
  environment: 'default',
  kind: 'sandbox',
  owner: 'app',
  name,
  version: null,
  previous: false,
  event: null,
});

/** A fake database that answers each read with its name, and records the statements it was sent. */
function fake(o: { fail?: (names: string[]) => unknown } = {}) {
  const statements: { tenant: string; names: string[]; keys: readonly (string | null)[] }[] = [];
  const waiting: (() => void)[] = [];
  const gate = () => new Promise<void>((r) => waiting.push(r));
  const batcher = new ReadBatcher<string>({
    one: async (tenant, c, keys) => {
      statements.push({ tenant, names: [c.name], keys });
      await gate();
      const err = o.fail?.([c.name]);
      if (err) throw err;
      return `${tenant}:${c.name}`;
    },
    many: async (tenant, calls, keys) => {
      const names = calls.map((c) => c.name);
      statements.push({ tenant, names, keys });
      await gate();
      const err = o.fail?.(names);
      if (err) throw err;
      return names.map((n) => `${tenant}:${n}`);
    },
    isItemError: (err) => (err as { code?: string }).code === '39000',
    maxInFlight: 1,
  });
  const settle = async () => {
    for (let i = 0; i < 10; i++) {
      for (const r of waiting.splice(0)) r();
      await new Promise((r) => setImmediate(r));
    }
  };
  return { batcher, statements, settle };
}

describe('ReadBatcher', () => {
  it('sends a read alone at once, and those that arrive meanwhile together, per tenant and key set', async () => {
    const { batcher, statements, settle } = fake();
    const k1 = ['aa'];
    const out = Promise.all([
      batcher.read('t1', call('A'), k1),
      batcher.read('t1', call('B'), ['aa']),
      batcher.read('t1', call('C'), ['aa']),
      batcher.read('t1', call('D'), ['bb']),
      batcher.read('t2', call('A'), ['cc']),
    ]);
    await settle();
    expect(await out).toEqual(['t1:A', 't1:B', 't1:C', 't1:D', 't2:A']);
    expect(statements.map((s) => `${s.tenant} ${s.names.join(',')} ${s.keys.join(',')}`)).toEqual([
      't1 A aa',
      't2 A cc',
      't1 B,C aa',
      't1 D bb',
    ]);
  });

  it('reads again one by one when one read’s ciphertext fails the statement, so only that read fails', async () => {
    const bad = Object.assign(new Error('Wrong key or corrupt data'), { code: '39000' });
    const { batcher, settle } = fake({ fail: (names) => (names.includes('BAD') ? bad : null) });
    const first = batcher.read('t', call('FIRST'), ['k']);
    const rest = ['A', 'BAD', 'C'].map((n) => batcher.read('t', call(n), ['k']).then(String, (e: Error) => e.message));
    await settle();
    expect(await first).toBe('t:FIRST');
    expect(await Promise.all(rest)).toEqual(['t:A', 'Wrong key or corrupt data', 't:C']);
  });

  it('fails every read of a statement that failed as a whole, and of one that answered the wrong number of rows', async () => {
    const gone = Object.assign(new Error('connection terminated'), { code: '57P01' });
    const { batcher, settle } = fake({ fail: (names) => (names.length > 1 ? gone : null) });
    const first = batcher.read('t', call('FIRST'), ['k']);
    const rest = ['A', 'B'].map((n) => batcher.read('t', call(n), ['k']).then(String, (e: Error) => e.message));
    await settle();
    expect(await first).toBe('t:FIRST');
    expect(await Promise.all(rest)).toEqual(['connection terminated', 'connection terminated']);

    const short = new ReadBatcher<string>({
      one: async () => 'one',
      many: async () => ['only one row'],
      isItemError: () => false,
      maxInFlight: 1,
    });
    const a = short.read('t', call('A'), ['k']);
    const bc = [short.read('t', call('B'), ['k']), short.read('t', call('C'), ['k'])].map((p) =>
      p.then(String, (e: Error) => e.message),
    );
    expect(await a).toBe('one');
    expect(await Promise.all(bc)).toEqual([
      'coffer.read_secret returned 1 rows for 2 reads',
      'coffer.read_secret returned 1 rows for 2 reads',
    ]);
  });
});
