import fc from 'fast-check';
import {
  ABORT_CODES,
  DEFAULT_LIMITS,
  DOCUMENT_TYPES,
  FRAME_PREFIX,
  NOTICE_TYPES,
  PROTOCOL_VERSION,
  ProtocolError,
  decodeFrame,
  encodeAbort,
  encodeCredit,
  encodeData,
  encodeDocument,
  encodeEnd,
  encodeMessage,
  encodeNotice,
  encodeOpen,
  type AbortCode,
  type DocumentType,
  type Frame,
  type FrameLimits,
  type NoticeType,
} from '../../../relay/protocol/index.ts';
import { HOSPITAL_ID_PATTERN } from '../../../certs/index.ts';
import { decodeBatch, encodeBatch } from '../../../relay/nats/router.ts';
import type { FuzzTarget } from '../support/harness.ts';
import { mutate, mutationArb } from '../support/mutate.ts';

const CLOSE_CODES = new Set([1002, 1008, 1009]);

export const peerArb = fc.oneof(fc.constantFrom('alpha', 'bravo', 'mallory', 'zz', 'a'.repeat(63)), fc.stringMatching(HOSPITAL_ID_PATTERN));
const idArb = fc.oneof(fc.constantFrom(1, 2, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff), fc.integer({ min: 1, max: 0xffff_ffff }));
const bytes = (max: number) => fc.uint8Array({ maxLength: max }).map((u) => Buffer.from(u));

/** A valid frame of any kind, encoded by the codec's own encoders. */
export const validFrameArb: fc.Arbitrary<Buffer> = fc.oneof(
  fc.tuple(idArb, peerArb, bytes(300)).map(([id, peer, meta]) => encodeOpen(id, peer, meta)),
  fc
    .tuple(
      idArb,
      bytes(600).filter((b) => b.length > 0),
    )
    .map(([id, p]) => encodeData(id, p)),
  idArb.map((id) => encodeEnd(id)),
  fc.tuple(idArb, fc.integer({ min: 1, max: 256 * 1024 * 1024 })).map(([id, n]) => encodeCredit(id, n)),
  fc.tuple(idArb, fc.constantFrom(...(Object.keys(ABORT_CODES) as AbortCode[])), fc.string({ maxLength: 250 })).map(([id, c, r]) => encodeAbort(id, c, r)),
  fc.tuple(fc.nat(), peerArb, bytes(600)).map(([id, peer, body]) => encodeMessage(id, peer, body)),
  fc
    .tuple(
      fc.constantFrom(...(Object.keys(NOTICE_TYPES) as NoticeType[])),
      fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 5 }),
    )
    .map(([t, b]) => encodeNotice(t, b)),
  fc
    .tuple(
      fc.constantFrom(...(Object.keys(DOCUMENT_TYPES) as DocumentType[])),
      bytes(600).filter((b) => b.length > 0),
    )
    .map(([t, b]) => encodeDocument(t, b)),
);

/** Random bytes, often with a plausible version/kind prefix so the decoder goes past the first checks. */
export const garbageArb: fc.Arbitrary<Buffer> = fc.oneof(
  bytes(200),
  fc
    .tuple(fc.integer({ min: 0, max: 9 }), fc.uint8Array({ maxLength: 120 }))
    .map(([kind, rest]) => Buffer.concat([Buffer.from([PROTOCOL_VERSION, kind]), rest])),
);

/** Re-encodes a decoded frame with the codec's encoders (kinds whose bytes are canonical). */
export function reencode(f: Frame): Buffer | undefined {
  switch (f.kind) {
    case 'open':
      return encodeOpen(f.id, f.peer, f.meta);
    case 'data':
      return encodeData(f.id, f.payload);
    case 'end':
      return encodeEnd(f.id);
    case 'credit':
      return encodeCredit(f.id, f.bytes);
    case 'message':
      return encodeMessage(f.id, f.peer, f.body);
    case 'abort':
      return encodeAbort(f.id, f.code, f.reason);
    case 'notice':
      return encodeNotice(f.type, f.body);
    case 'document':
      return encodeDocument(f.type, f.body);
  }
}

/** Decodes `buf`: a Frame, or a ProtocolError with a code and a WebSocket close code. Anything else throws. */
export function decodeOrTypedError(buf: Buffer, limits: FrameLimits = DEFAULT_LIMITS): Frame | ProtocolError {
  try {
    return decodeFrame(buf, limits);
  } catch (err) {
    if (!(err instanceof ProtocolError)) throw new Error(`decodeFrame threw ${(err as Error)?.name}: ${(err as Error)?.message}`, { cause: err });
    if (!/^ERR_PROTOCOL_[A-Z_]+$/.test(err.code)) throw new Error(`ProtocolError without a protocol code: ${err.code}`, { cause: err });
    if (!CLOSE_CODES.has(err.closeCode)) throw new Error(`ProtocolError ${err.code} with close code ${err.closeCode}`, { cause: err });
    return err;
  }
}

/** Checks what a successful decode returned is internally consistent with the bytes. */
function checkDecoded(buf: Buffer, f: Frame, limits: FrameLimits): void {
  if (buf.length > limits.maxFrame || buf.length < FRAME_PREFIX) throw new Error(`decoded a ${buf.length}-byte frame outside the limits`);
  if (f.kind === 'open' || f.kind === 'message') {
    if (!HOSPITAL_ID_PATTERN.test(f.peer)) throw new Error(`decoded a bad peer ${JSON.stringify(f.peer)}`);
  }
  if (f.kind !== 'message' && f.kind !== 'notice' && f.kind !== 'document' && f.id === 0) throw new Error(`decoded transfer id 0 for ${f.kind}`);
  // Everything but NOTICE (JSON text) and ABORT (reason decoded as UTF-8, lossy on bad bytes) is byte-canonical.
  if (f.kind !== 'notice' && f.kind !== 'abort') {
    const again = reencode(f);
    if (!again?.equals(buf)) throw new Error(`${f.kind} frame does not re-encode to the same bytes`);
  }
}

const limitsArb: fc.Arbitrary<FrameLimits> = fc.oneof(
  { weight: 3, arbitrary: fc.constant({ ...DEFAULT_LIMITS }) },
  fc.record({
    maxFrame: fc.integer({ min: FRAME_PREFIX, max: 2048 }),
    maxHeader: fc.integer({ min: 0, max: 512 }),
    maxMessage: fc.integer({ min: 0, max: 512 }),
  }),
);

/** relay/protocol decodeFrame: valid frames round-trip; random and mutated ones decode or fail with a ProtocolError. */
export const frameTarget: FuzzTarget<{ seeds: Buffer[] }> = {
  name: 'frame-decoder',
  async setup() {
    return { seeds: fc.sample(validFrameArb, { numRuns: 64, seed: 42 }) };
  },
  async teardown() {},
  properties: {
    'valid frames decode and re-encode to the same bytes': {
      quickRuns: 400,
      build: () =>
        fc.property(validFrameArb, (buf) => {
          const f = decodeFrame(buf);
          const again = reencode(f);
          if (!again?.equals(buf)) throw new Error(`${f.kind} frame did not round-trip`);
        }),
    },
    'random bytes decode to a frame or a ProtocolError, nothing else': {
      quickRuns: 600,
      build: () =>
        fc.property(garbageArb, limitsArb, (buf, limits) => {
          const r = decodeOrTypedError(buf, limits);
          if (!(r instanceof ProtocolError)) checkDecoded(buf, r, limits);
        }),
    },
    'batches of MESSAGEs between relay nodes round-trip, and mutated ones decode to whole records inside the batch': {
      quickRuns: 400,
      build: () =>
        fc.property(fc.array(fc.tuple(peerArb, fc.integer({ min: 0, max: 0xffff_ffff }), validFrameArb), { maxLength: 8 }), mutationArb(32), (items, m) => {
          const records = items.map(([to, seq, frame]) => ({ to, seq, frame }));
          const buf = encodeBatch(records);
          const back = decodeBatch(buf);
          if (back.length !== records.length || back.some((r, i) => r.to !== records[i]!.to || r.seq !== records[i]!.seq || !r.frame.equals(records[i]!.frame)))
            throw new Error('batch did not round-trip');
          const bad = mutate([buf], m);
          for (const r of decodeBatch(bad)) {
            if (r.frame.buffer !== bad.buffer || r.frame.byteOffset + r.frame.length > bad.byteOffset + bad.length) throw new Error('record outside the batch');
            if (r.to.length === 0) throw new Error('record without a recipient');
          }
        }),
    },
    'mutated valid frames decode to a consistent frame or a ProtocolError': {
      quickRuns: 600,
      build: ({ seeds }) =>
        fc.property(
          fc.oneof(
            validFrameArb.map((b) => [b]),
            fc.constant(seeds),
          ),
          mutationArb(64),
          limitsArb,
          (bases, m, limits) => {
            const buf = mutate(bases, m);
            const r = decodeOrTypedError(buf, limits);
            if (!(r instanceof ProtocolError)) checkDecoded(buf, r, limits);
          },
        ),
    },
  },
};
