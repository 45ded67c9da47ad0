import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { splitData } from '../../relay/nats/router.ts';
import { decodeFrame, encodeData, DEFAULT_LIMITS, FRAME_PREFIX } from '../../relay/protocol/index.ts';

/** Payload bytes of DATA frames, in order, with the transfer id each one names. */
function reassemble(parts: Buffer[]): { ids: number[]; payload: Buffer } {
  const ids: number[] = [];
  const chunks: Buffer[] = [];
  for (const p of parts) {
    const f = decodeFrame(p, { ...DEFAULT_LIMITS, maxFrame: p.length });
    if (f.kind !== 'data') throw new Error(`expected data, got ${f.kind}`);
    ids.push(f.id);
    chunks.push(Buffer.from(f.payload));
  }
  return { ids, payload: Buffer.concat(chunks) };
}

describe('splitData (DATA frames larger than the NATS payload limit)', () => {
  it('splits a default-sized chunk into a view of the frame and a small copied tail, bytes and id intact', () => {
    const payload = randomBytes(1024 * 1024);
    const frame = encodeData(7, payload);
    const max = 1024 * 1024;
    const parts = splitData(frame, max);
    expect(parts).to.have.length(2);
    expect(parts[0]!.length).to.equal(max);
    // The first part shares the frame's memory: no copy of the chunk.
    expect(parts[0]!.buffer).to.equal(frame.buffer);
    expect(parts[0]!.byteOffset).to.equal(frame.byteOffset);
    expect(parts[1]!.length).to.equal(FRAME_PREFIX + FRAME_PREFIX);
    const r = reassemble(parts);
    expect(r.ids).to.deep.equal([7, 7]);
    expect(r.payload.equals(payload)).to.equal(true);
  });

  it('keeps every part within the limit for frames many times its size', () => {
    for (const [size, max] of [
      [10_000, 1000],
      [4096, 64],
      [999, 100],
      [1000 - FRAME_PREFIX, 100],
    ] as const) {
      const payload = randomBytes(size);
      const parts = splitData(encodeData(0xfffffff0, payload), max);
      for (const p of parts) expect(p.length).to.be.at.most(max);
      const r = reassemble(parts);
      expect(r.payload.equals(payload), `size ${size} max ${max}`).to.equal(true);
      expect(new Set(r.ids)).to.deep.equal(new Set([0xfffffff0]));
    }
  });

  it('refuses a limit that leaves no room for data', () => {
    expect(() => splitData(encodeData(1, Buffer.alloc(10)), FRAME_PREFIX)).to.throw(RangeError);
  });
});
