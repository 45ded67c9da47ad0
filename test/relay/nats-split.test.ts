import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { decodeBatch, encodeAcks, encodeBatch, splitData } from '../../relay/nats/router.ts';
import { ABORT_CODES, decodeFrame, encodeData, encodeMessage, DEFAULT_LIMITS, FRAME_PREFIX } from '../../relay/protocol/index.ts';

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

describe('direct message batches between relay nodes (wire format)', () => {
  const items = [
    { to: 'bravo', seq: 1, frame: encodeMessage(1, 'bravo', Buffer.from('first')) },
    { to: 'st-marys-hospital', seq: 0xffffffff, frame: encodeMessage(2, 'st-marys-hospital', randomBytes(3000)) },
    { to: 'c3', seq: 77, frame: Buffer.alloc(0) },
  ];

  it('carries each recipient, sequence number and frame through encode and decode, frames as views of the batch', () => {
    const buf = encodeBatch(items);
    expect(buf.length).to.equal(items.reduce((n, m) => n + 9 + m.to.length + m.frame.length, 0));
    const got = decodeBatch(buf);
    expect(got.map((m) => [m.to, m.seq])).to.deep.equal(items.map((m) => [m.to, m.seq]));
    got.forEach((m, i) => expect(m.frame.equals(items[i]!.frame), `frame ${i}`).to.equal(true));
    expect(got[1]!.frame.buffer).to.equal(buf.buffer);
  });

  it('keeps the whole records of a truncated or corrupt batch and stops at the first that does not fit', () => {
    const buf = encodeBatch(items);
    const second = 9 + items[0]!.to.length + items[0]!.frame.length;
    // Cut inside the second record's frame, then inside its head, then a zero id length.
    expect(decodeBatch(buf.subarray(0, buf.length - items[2]!.to.length - 20)).map((m) => m.seq)).to.deep.equal([1]);
    expect(decodeBatch(buf.subarray(0, second + 4)).map((m) => m.seq)).to.deep.equal([1]);
    const zeroed = Buffer.from(buf);
    zeroed[second] = 0;
    expect(decodeBatch(zeroed).map((m) => m.seq)).to.deep.equal([1]);
    // A frame length past the end of the batch.
    const long = Buffer.from(buf);
    long.writeUInt32BE(0xffffff, second + 1 + items[1]!.to.length + 4);
    expect(decodeBatch(long).map((m) => m.seq)).to.deep.equal([1]);
    expect(decodeBatch(Buffer.alloc(0))).to.deep.equal([]);
  });

  it('answers each message with its sequence number and 0 (delivered) or the abort code on the wire', () => {
    const buf = encodeAcks([
      [5, undefined],
      [0xfffffffe, 'no-route'],
    ]);
    expect(buf.length).to.equal(10);
    expect(buf.readUInt32BE(0)).to.equal(5);
    expect(buf[4]).to.equal(0);
    expect(buf.readUInt32BE(5)).to.equal(0xfffffffe);
    expect(buf[9]).to.equal(ABORT_CODES['no-route']);
  });
});
