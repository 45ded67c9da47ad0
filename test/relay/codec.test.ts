import { expect } from 'chai';
import fc from 'fast-check';
import {
  decodeFrame,
  encodeAbort,
  encodeCredit,
  encodeData,
  encodeEnd,
  encodeMessage,
  encodeNotice,
  encodeOpen,
  setFrameId,
  DEFAULT_LIMITS,
  FRAME_PREFIX,
  FrameKind,
  MAX_REASON,
  PROTOCOL_VERSION,
  ProtocolError,
} from '../../relay/protocol/index.ts';

function rejects(buf: Buffer, code: string, closeCode?: number): void {
  let caught: unknown;
  try {
    decodeFrame(buf);
  } catch (err) {
    caught = err;
  }
  expect(caught, `expected ${code}`).to.be.instanceOf(ProtocolError);
  expect((caught as ProtocolError).code).to.equal(code);
  if (closeCode) expect((caught as ProtocolError).closeCode).to.equal(closeCode);
}

describe('frame codec', function () {
  it('round-trips every frame kind', function () {
    expect(decodeFrame(encodeOpen(7, 'bravo', Buffer.from('{"x":1}')))).to.deep.include({ kind: 'open', id: 7, peer: 'bravo' });
    expect(
      decodeFrame(encodeOpen(7, 'bravo', Buffer.from('meta'))).kind === 'open' &&
        (decodeFrame(encodeOpen(7, 'bravo', Buffer.from('meta'))) as { meta: Buffer }).meta.toString(),
    ).to.equal('meta');
    const data = decodeFrame(encodeData(9, Buffer.from('hello')));
    expect(data.kind).to.equal('data');
    expect(data.kind === 'data' && data.payload.toString()).to.equal('hello');
    expect(decodeFrame(encodeEnd(9))).to.deep.equal({ kind: 'end', id: 9 });
    expect(decodeFrame(encodeCredit(9, 4096))).to.deep.equal({ kind: 'credit', id: 9, bytes: 4096 });
    expect(decodeFrame(encodeAbort(9, 'no-route', 'bravo is offline'))).to.deep.equal({ kind: 'abort', id: 9, code: 'no-route', reason: 'bravo is offline' });
    const msg = decodeFrame(encodeMessage(3, 'alpha', Buffer.from([1, 2, 3])));
    expect(msg.kind === 'message' && [msg.id, msg.peer, [...msg.body]]).to.deep.equal([3, 'alpha', [1, 2, 3]]);
    expect(decodeFrame(encodeNotice('shutting-down', { deadlineMs: 5000 }))).to.deep.equal({
      kind: 'notice',
      id: 0,
      type: 'shutting-down',
      body: { deadlineMs: 5000 },
    });
  });

  it('decodes data as a view of the input (no payload copy) and setFrameId patches in place', function () {
    const frame = encodeData(1, Buffer.alloc(1000, 7));
    const decoded = decodeFrame(frame);
    expect(decoded.kind === 'data' && decoded.payload.buffer).to.equal(frame.buffer);
    setFrameId(frame, 0x8000_0001);
    expect(decodeFrame(frame)).to.have.property('id', 0x8000_0001);
  });

  it('truncates a long abort reason to MAX_REASON bytes and still decodes', function () {
    const f = decodeFrame(encodeAbort(1, 'internal', 'é'.repeat(300)));
    expect(f.kind === 'abort' && Buffer.byteLength(f.reason)).to.be.at.most(MAX_REASON);
  });

  it('rejects a frame shorter than its prefix', function () {
    rejects(Buffer.alloc(0), 'ERR_PROTOCOL_TRUNCATED', 1002);
    rejects(Buffer.from([PROTOCOL_VERSION, FrameKind.END, 0, 0]), 'ERR_PROTOCOL_TRUNCATED');
  });

  it('rejects an unknown version and an unknown kind', function () {
    const f = encodeEnd(1);
    f[0] = 99;
    rejects(f, 'ERR_PROTOCOL_VERSION', 1002);
    const g = encodeEnd(1);
    g[1] = 200;
    rejects(g, 'ERR_PROTOCOL_KIND', 1002);
  });

  it('rejects a frame longer than maxFrame with close code 1009', function () {
    const big = Buffer.alloc(DEFAULT_LIMITS.maxFrame + 1);
    big[0] = PROTOCOL_VERSION;
    big[1] = FrameKind.DATA;
    big.writeUInt32BE(1, 2);
    rejects(big, 'ERR_PROTOCOL_TOO_LARGE', 1009);
  });

  it('rejects transfer id 0 and empty data', function () {
    const f = encodeEnd(1);
    f.writeUInt32BE(0, 2);
    rejects(f, 'ERR_PROTOCOL_BAD_ID');
    rejects(Buffer.from([PROTOCOL_VERSION, FrameKind.DATA, 0, 0, 0, 1]), 'ERR_PROTOCOL_BAD_LENGTH');
  });

  it('rejects an open whose peer length points past the frame or names no hospital', function () {
    const f = encodeOpen(1, 'bravo');
    f[FRAME_PREFIX] = 200;
    rejects(f, 'ERR_PROTOCOL_BAD_PEER');
    const g = encodeOpen(1, 'bravo');
    g[FRAME_PREFIX + 1] = 'B'.charCodeAt(0);
    rejects(g, 'ERR_PROTOCOL_BAD_PEER');
  });

  it('rejects an open whose metadata length disagrees with the frame or exceeds maxHeader', function () {
    const f = encodeOpen(1, 'bravo', Buffer.from('abc'));
    f.writeUInt16BE(4, FRAME_PREFIX + 1 + 5);
    rejects(f, 'ERR_PROTOCOL_BAD_LENGTH');
    const g = encodeOpen(1, 'bravo');
    g.writeUInt16BE(0xffff, FRAME_PREFIX + 1 + 5);
    rejects(g, 'ERR_PROTOCOL_TOO_LARGE', 1009);
  });

  it('rejects credit of zero, beyond MAX_CREDIT, or with trailing bytes', function () {
    const f = encodeCredit(1, 5);
    f.writeUInt32BE(0, FRAME_PREFIX);
    rejects(f, 'ERR_PROTOCOL_BAD_LENGTH', 1008);
    const g = encodeCredit(1, 5);
    g.writeUInt32BE(0xffff_ffff, FRAME_PREFIX);
    rejects(g, 'ERR_PROTOCOL_BAD_LENGTH', 1008);
    rejects(Buffer.concat([encodeCredit(1, 5), Buffer.from([0])]), 'ERR_PROTOCOL_BAD_LENGTH');
  });

  it('rejects an unknown abort code and a reason length past the frame', function () {
    const f = encodeAbort(1, 'cancelled', 'x');
    f.writeUInt16BE(999, FRAME_PREFIX);
    rejects(f, 'ERR_PROTOCOL_BAD_CODE');
    const g = encodeAbort(1, 'cancelled', 'x');
    g[FRAME_PREFIX + 2] = 50;
    rejects(g, 'ERR_PROTOCOL_BAD_LENGTH');
  });

  it('rejects a message over maxMessage and a notice that is not a JSON object', function () {
    const big = encodeMessage(1, 'alpha', Buffer.alloc(10));
    expect(() => decodeFrame(big, { ...DEFAULT_LIMITS, maxMessage: 5 }))
      .to.throw(ProtocolError)
      .with.property('code', 'ERR_PROTOCOL_TOO_LARGE');
    const n = encodeNotice('ready', {});
    rejects(Buffer.concat([n.subarray(0, FRAME_PREFIX + 1), Buffer.from('[1]')]), 'ERR_PROTOCOL_BAD_NOTICE');
    rejects(Buffer.concat([n.subarray(0, FRAME_PREFIX + 1), Buffer.from('{nope')]), 'ERR_PROTOCOL_BAD_NOTICE');
    const t = encodeNotice('ready', {});
    t[FRAME_PREFIX] = 77;
    rejects(t, 'ERR_PROTOCOL_BAD_NOTICE');
  });

  it('throws TypeError for API misuse when encoding', function () {
    expect(() => encodeData(0, Buffer.from('x'))).to.throw(TypeError);
    expect(() => encodeData(1, Buffer.alloc(0))).to.throw(TypeError);
    expect(() => encodeCredit(1, 0)).to.throw(TypeError);
    expect(() => encodeOpen(1, 'NOT AN ID')).to.throw(TypeError);
    expect(() => encodeData(1, Buffer.alloc(DEFAULT_LIMITS.maxFrame))).to.throw(TypeError);
  });

  it('either decodes or throws ProtocolError for any byte string (never another error)', function () {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.integer({ min: 1, max: 7 }), (bytes, kind) => {
        const buf = Buffer.from(bytes);
        if (buf.length >= 2) {
          buf[0] = PROTOCOL_VERSION;
          buf[1] = kind;
        }
        try {
          decodeFrame(buf);
        } catch (err) {
          if (!(err instanceof ProtocolError)) throw err;
        }
      }),
      { numRuns: 3000 },
    );
  });
});
