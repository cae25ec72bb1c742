import { describe, expect, it } from 'vitest';
import type { SecretRow, WriteCall } from './secrets.queries.ts';
import { CallHandle, type CallResult, SecretWriteBatcher } from './write-batcher.ts';
import { WriteLanes } from './write-lanes.ts';

const row = (currentVersion: number): SecretRow => ({ currentVersion, mac: `mac-${currentVersion}` }) as SecretRow;

/** Handles as the batcher makes them for calls planned on top of `after`; `settle` is what their statement does. */
function handles() {
  const call = (after: CallHandle[] = []): CallHandle => new CallHandle(after);
  const ok = (r: SecretRow, xmin: string): CallResult => ({
    outcome: 'ok',
    items: [{ row: r, xmin, patternOk: null }],
  });
  return { call, ok };
}

describe('WriteLanes', () => {
  it('runs the holders of one lane in arrival order, and takes several lanes in one order', async () => {
    const lanes = new WriteLanes();
    const order: string[] = [];
    let release = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const first = lanes.run(['a'], async () => {
      await gate;
      order.push('first');
    });
    // Opposite orders of the same two lanes: both are taken sorted, so neither waits on the other in a cycle.
    const second = lanes.run(['b', 'a'], async () => void order.push('second'));
    const third = lanes.run(['a', 'b'], async () => void order.push('third'));
    release();
    await Promise.all([first, second, third]);
    expect(order).toEqual(['first', 'second', 'third']);
  });

  it('plans on a write still to return, then on what it left, or on the row as it is if it failed', () => {
    const { call, ok } = handles();
    const lanes = new WriteLanes();
    lanes.settle('k', { seq: 0 } as CallHandle, row(1), '100');
    const a = call();
    lanes.predict('k', row(2), { handle: a, item: 0, mac: 'mac-2' });
    expect(lanes.known('k')).toMatchObject({ row: { currentVersion: 2 }, xmin: null, pending: { handle: a } });

    a.settle(ok(row(2), '200'));
    expect(lanes.known('k')).toEqual({ row: row(2), xmin: '200' });

    const b = call();
    lanes.predict('k', row(3), { handle: b, item: 0, mac: 'mac-3' });
    const c = call([b]);
    lanes.predict('k', row(4), { handle: c, item: 0, mac: 'mac-4' });
    // b did not apply, so neither can c, which was planned on top of it: plan on the row as it is.
    b.settle({ outcome: 'stale', items: [{ row: row(2), xmin: '200', patternOk: null }] });
    expect(lanes.known('k')).toEqual({ row: row(2), xmin: '200' });
  });

  it('never lets an older answer replace a newer one', () => {
    const { call, ok } = handles();
    const lanes = new WriteLanes();
    const older = call();
    const newer = call();
    older.settle(ok(row(5), '500'));
    newer.settle(ok(row(6), '600'));
    lanes.settle('k', newer, row(6), '600');
    lanes.settle('k', older, row(5), '500');
    expect(lanes.known('k')).toEqual({ row: row(6), xmin: '600' });
  });
});

describe('CallHandle', () => {
  it('is doomed when anything it was planned on top of failed, walking a graph that joins once per call', () => {
    const { call, ok } = handles();
    // A wide graph that joins at every level (bundles): walked naively it is 2^depth paths.
    let level = [call(), call()];
    for (let i = 0; i < 40; i++) level = [call(level), call(level)];
    const top = call(level);
    expect(top.doomed()).toBe(false);
    const [x] = level;
    x?.settle(ok(row(1), '1'));
    expect(top.doomed()).toBe(false);
    level[1]?.settle({ outcome: 'stale', items: [] });
    expect(top.doomed()).toBe(true);
  });
});

describe('SecretWriteBatcher', () => {
  /** A batcher whose statements return when the test says, each call answered `ok` for one item. */
  function manual() {
    const sent: { calls: number; json: readonly WriteCall[]; release: () => void }[] = [];
    const batcher = new SecretWriteBatcher({
      send: (_tenant, calls) =>
        new Promise((resolve) => {
          sent.push({
            calls: calls.length,
            json: calls,
            release: () =>
              resolve(
                calls.map((_, i) => ({
                  call_index: i + 1,
                  outcome: 'ok',
                  item_index: 0,
                  pattern_ok: null,
                  row_xmin: String(100 + i),
                  secret: null,
                  error_code: null,
                })),
              ),
          });
        }),
    });
    const submit = (o: { alone?: boolean; after?: CallHandle } = {}) =>
      batcher.submit('t', {
        call: { items: [{ name: 'K', xmin: null, pattern: null, version: null }] } as never,
        values: [],
        dekVersion: 1,
        dekHex: '',
        ...(o.alone ? { alone: true } : {}),
        ...(o.after ? { chains: [{ item: 0, after: { handle: o.after, item: 0, mac: 'm' } }] } : {}),
      });
    const tick = () => new Promise((r) => setImmediate(r));
    return { sent, submit, tick };
  }

  it("sends a tenant's calls one statement at a time, those that wait together, one with patterns alone", async () => {
    const { sent, submit, tick } = manual();
    const first = submit();
    const waiting = [submit(), submit(), submit({ alone: true }), submit()];
    expect(sent.map((s) => s.calls)).toEqual([1]);
    sent[0]?.release();
    await first.result;
    await tick();
    // Everything that waited but the call with patterns, which goes next, alone.
    expect(sent.map((s) => s.calls)).toEqual([1, 3]);
    sent[1]?.release();
    await tick();
    expect(sent.map((s) => s.calls)).toEqual([1, 3, 1]);
    sent[2]?.release();
    expect((await Promise.all(waiting.map((w) => w.result))).map((r) => r.outcome)).toEqual(Array(4).fill('ok'));
  });

  it('holds a call planned on one in flight until that one has returned, then sends it on what it left', async () => {
    const { sent, submit, tick } = manual();
    const first = submit();
    const chained = submit({ after: first.handle });
    expect(sent.map((s) => s.calls)).toEqual([1]);
    sent[0]?.release();
    await first.result;
    await tick();
    expect(sent.map((s) => s.calls)).toEqual([1, 1]);
    expect(sent[1]?.json[0]?.items[0]?.xmin).toBe('100');
    sent[1]?.release();
    expect((await chained.result).outcome).toBe('ok');
  });
});
