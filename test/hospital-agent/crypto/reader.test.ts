import { expect } from 'chai';
import { Readable } from 'node:stream';
import { chunksOf } from '../../../hospital-agent/crypto/reader.ts';

describe('chunksOf (reading an envelope stream chunk by chunk)', () => {
  it('yields the pushed buffers themselves even when several are buffered (no concatenation)', async () => {
    const pushed = [Buffer.alloc(1000, 1), Buffer.alloc(2000, 2), Buffer.alloc(3000, 3)];
    const source = new Readable({ read() {} });
    for (const b of pushed) source.push(b);
    source.push(null);
    const got: Buffer[] = [];
    for await (const c of chunksOf(source)) got.push(c);
    expect(got).to.have.length(3);
    got.forEach((c, i) => expect(c.buffer).to.equal(pushed[i]?.buffer));
  });

  it('pauses a fast source once about a megabyte waits, and reads everything after', async () => {
    let produced = 0;
    const source = new Readable({
      highWaterMark: 64 * 1024,
      read() {
        produced += 1;
        this.push(produced <= 64 ? Buffer.alloc(64 * 1024, produced) : null);
      },
    });
    const it = chunksOf(source)[Symbol.asyncIterator]();
    const first = await it.next();
    expect(first.done).to.equal(false);
    await new Promise((r) => setTimeout(r, 50));
    // Not consumed for 50 ms: the source stopped at the queue limit (plus its own buffer), not at 64 chunks.
    expect(produced).to.be.below(40);
    let total = (first.value as Buffer).length;
    for (let r = await it.next(); !r.done; r = await it.next()) total += r.value.length;
    expect(total).to.equal(64 * 64 * 1024);
  });

  it('fails with the source error after the chunks that came before it', async () => {
    const source = new Readable({ read() {} });
    source.push(Buffer.from('abc'));
    setImmediate(() => source.destroy(new Error('link lost')));
    const got: string[] = [];
    let error: Error | undefined;
    try {
      for await (const c of chunksOf(source)) got.push(c.toString());
    } catch (err) {
      error = err as Error;
    }
    expect(got).to.deep.equal(['abc']);
    expect(error?.message).to.equal('link lost');
  });

  it('fails when the source closes without ending', async () => {
    const source = new Readable({ read() {} });
    setImmediate(() => source.destroy());
    let error: (Error & { code?: string }) | undefined;
    try {
      for await (const _ of chunksOf(source)) void _;
    } catch (err) {
      error = err as Error;
    }
    expect(error?.code).to.equal('ERR_STREAM_PREMATURE_CLOSE');
  });

  it('destroys the source when the reader stops early', async () => {
    const source = new Readable({ read() {} });
    source.push(Buffer.from('a'));
    source.push(Buffer.from('b'));
    for await (const _ of chunksOf(source)) break;
    expect(source.destroyed).to.equal(true);
  });
});
