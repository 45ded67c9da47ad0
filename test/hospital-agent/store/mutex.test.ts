import { expect } from 'chai';
import { KeyedMutex } from '../../../hospital-agent/store/mutex.ts';

/** A promise and its resolver, so a test decides when a section ends (no timers). */
function gate(): { promise: Promise<void>; open: () => void } {
  let open = (): void => undefined;
  const promise = new Promise<void>((r) => (open = r));
  return { promise, open };
}

/** Lets every queued microtask and promise job run. */
const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('KeyedMutex', function () {
  it('runs sections on one key one at a time, in call order', async function () {
    const m = new KeyedMutex();
    const log: string[] = [];
    const g = gate();
    const a = m.run('k', async () => {
      log.push('a start');
      await g.promise;
      log.push('a end');
    });
    const b = m.run('k', async () => {
      log.push('b');
    });
    await settle();
    expect(log).to.deep.equal(['a start']);
    g.open();
    await Promise.all([a, b]);
    expect(log).to.deep.equal(['a start', 'a end', 'b']);
  });

  it('runs sections on different keys at once', async function () {
    const m = new KeyedMutex();
    const g = gate();
    let bRan = false;
    const a = m.run('x', () => g.promise);
    const b = m.run('y', async () => {
      bRan = true;
    });
    await b;
    // b finished while a still holds its key.
    expect(bRan).to.equal(true);
    g.open();
    await a;
  });

  it('makes a section on several keys wait for each of them, and later sections on any of them wait for it', async function () {
    const m = new KeyedMutex();
    const log: string[] = [];
    const gx = gate();
    const gy = gate();
    const x = m.run('x', async () => {
      await gx.promise;
      log.push('x');
    });
    const y = m.run('y', async () => {
      await gy.promise;
      log.push('y');
    });
    const both = m.run(['x', 'y'], async () => {
      log.push('both');
    });
    const after = m.run('y', async () => {
      log.push('after');
    });
    gx.open();
    await x;
    await settle();
    expect(log).to.deep.equal(['x']);
    gy.open();
    await Promise.all([y, both, after]);
    expect(log).to.deep.equal(['x', 'y', 'both', 'after']);
  });

  it('goes on after a section that throws, and passes its error to its caller', async function () {
    const m = new KeyedMutex();
    const failed = m.run('k', async () => {
      throw new Error('boom');
    });
    const next = m.run('k', async () => 7);
    const err = await failed.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((err as Error).message).to.equal('boom');
    expect(await next).to.equal(7);
  });

  it('forgets a key once its last section settled', async function () {
    const m = new KeyedMutex();
    await Promise.all([m.run('a', async () => 1), m.run(['a', 'b'], async () => 2), m.run('c', async () => 3)]);
    await settle();
    expect(m.size).to.equal(0);
  });
});
