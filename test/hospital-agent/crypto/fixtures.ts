import { readFileSync } from 'node:fs';
import { Readable, Writable } from 'node:stream';
import {
  createKeyBundle,
  generateAgentKeys,
  loadIdentity,
  parseCrl,
  verifyKeyBundle,
  type Identity,
  type KeyBundle,
  type ParsedCrl,
  type VerifiedKeyBundle,
} from '../../../certs/index.ts';
import {
  KeyRing,
  MemoryReplayStore,
  openEnvelope,
  recipientKeys,
  sealEnvelope,
  senderKeys,
  withKids,
  type LocalKeys,
  type OpenOptions,
  type OpenedEnvelope,
  type RecipientKeys,
  type SealOptions,
  type SealSummary,
  type SenderKeys,
} from '../../../hospital-agent/crypto/index.ts';
import { makeFederation, type TestFederation } from '../../support/federation.ts';
import { tempDir } from '../../support/tmp.ts';

/** One agent of the test federation with its keys and verified bundle. */
export interface Party {
  id: string;
  identity: Identity;
  keys: LocalKeys;
  bundle: KeyBundle;
  verified: VerifiedKeyBundle;
  sender: SenderKeys;
  recipient: RecipientKeys;
}

/** The shared test world: a federation of six agents, all in one key ring. */
export interface World {
  dir: string;
  fed: TestFederation;
  caPem: string;
  ring: KeyRing;
  parties: Record<string, Party>;
  /** The CRL the ring checks against; tests may replace it. */
  crl: ParsedCrl | undefined;
  reloadCrl(): void;
}

export const AGENTS = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot'] as const;

let world: Promise<World> | undefined;

/**
 * Builds the world once per mocha process (RSA key generation is the slow
 * part), removed when the process exits: a parallel run's worker runs many
 * files, each its own root suite, so a root `after` would remove the world
 * under the next file that uses it.
 */
export function getWorld(): Promise<World> {
  world ??= (async () => {
    const tmp = tempDir('hie-crypto-');
    process.once('exit', () => tmp.cleanup());
    const fed = makeFederation(tmp.dir, [...AGENTS]);
    const caPem = readFileSync(fed.caPath, 'utf8');
    const w: World = {
      dir: tmp.dir,
      fed,
      caPem,
      ring: undefined as unknown as KeyRing,
      parties: {},
      crl: undefined,
      reloadCrl() {
        w.crl = parseCrl(readFileSync(fed.crlPath, 'utf8'), caPem);
      },
    };
    w.ring = new KeyRing({ caPem, crl: () => w.crl });
    for (const id of AGENTS) w.parties[id] = await makeParty(w, id, loadIdentity(fed.agents[id]!));
    return w;
  })();
  return world;
}

/** A party with fresh keys and a bundle signed by `identity`, added to the ring. */
export async function makeParty(w: World, id: string, identity: Identity): Promise<Party> {
  const keys = await withKids(generateAgentKeys());
  const bundle = await createKeyBundle(identity, keys);
  const verified = await verifyKeyBundle(bundle, { caPem: w.caPem });
  await w.ring.add(bundle);
  return { id, identity, keys, bundle, verified, sender: senderKeys(id, keys), recipient: recipientKeys(id, [keys]) };
}

/** Deterministic content: byte p is a cyclic pseudo-random base, with every 4 KiB page stamped with its number. */
const BASE = (() => {
  const b = Buffer.allocUnsafe(1 << 20);
  let x = 0x9e3779b9;
  for (let i = 0; i < b.length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeInt32LE(x | 0, i);
  }
  return b;
})();

/** Fills `out` with the content bytes at positions [pos, pos + out.length). */
export function contentAt(pos: number, out: Buffer): Buffer {
  let o = 0;
  while (o < out.length) {
    const p = pos + o;
    const take = Math.min(out.length - o, BASE.length - (p % BASE.length));
    BASE.copy(out, o, p % BASE.length, (p % BASE.length) + take);
    o += take;
  }
  const firstPage = Math.ceil(pos / 4096) * 4096;
  for (let page = firstPage; page + 4 <= pos + out.length; page += 4096) out.writeUInt32BE((page / 4096) >>> 0, page - pos);
  return out;
}

/** A Readable of `size` content bytes in pieces of `piece` bytes. */
export function contentStream(size: number, piece = 256 * 1024): Readable {
  let pos = 0;
  return new Readable({
    highWaterMark: piece,
    read() {
      if (pos >= size) return void this.push(null);
      const n = Math.min(piece, size - pos);
      this.push(contentAt(pos, Buffer.allocUnsafe(n)));
      pos += n;
    },
  });
}

/** A Writable that checks every byte against {@link contentAt}; `mismatch` is set on the first difference. */
export class ContentChecker extends Writable {
  pos = 0;
  mismatch: number | undefined;
  override _write(chunk: Buffer, _e: BufferEncoding, cb: (e?: Error | null) => void): void {
    if (this.mismatch === undefined && !contentAt(this.pos, Buffer.allocUnsafe(chunk.length)).equals(chunk)) this.mismatch = this.pos;
    this.pos += chunk.length;
    cb();
  }
}

/** A Writable that keeps everything. */
export class Collector extends Writable {
  parts: Buffer[] = [];
  override _write(chunk: Buffer, _e: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.parts.push(Buffer.from(chunk));
    cb();
  }
  get data(): Buffer {
    return Buffer.concat(this.parts);
  }
}

let counter = 0;
/** A fresh exchange id. */
export const nextId = (): string => `x-${process.pid}-${Date.now()}-${counter++}`;

/** Seal options from `from` to `to` with test defaults. */
export function sealOpts(w: World, from: string, to: string[], extra: Partial<SealOptions> = {}): SealOptions {
  return {
    exchangeId: nextId(),
    sender: w.parties[from]!.sender,
    recipients: to.map((t) => w.parties[t]!.verified),
    contentType: 'application/fhir+json',
    consentRef: 'consent-123',
    ...extra,
  };
}

/** Seals a buffer into an envelope buffer. */
export async function sealBuffer(data: Buffer, options: SealOptions): Promise<{ envelope: Buffer; summary: SealSummary }> {
  const s = sealEnvelope(Readable.from(data.length ? [data] : []), options);
  const parts: Buffer[] = [];
  for await (const p of s) parts.push(p as Buffer);
  return { envelope: Buffer.concat(parts), summary: await s.summary };
}

/** Splits a buffer into pieces at the given cut points (to vary read boundaries). */
export function* split(buf: Buffer, sizes: number[] = [buf.length]): Generator<Buffer> {
  let pos = 0;
  let i = 0;
  while (pos < buf.length) {
    const n = Math.max(1, sizes[i++ % sizes.length] ?? buf.length);
    yield buf.subarray(pos, pos + n);
    pos += n;
  }
}

/** Opens an envelope buffer as `party`, collecting plaintext. */
export async function openBuffer(
  w: World,
  envelope: Buffer | Iterable<Buffer>,
  party: string,
  extra: Partial<OpenOptions> = {},
): Promise<{ opened: OpenedEnvelope; plaintext: Buffer }> {
  const sink = new Collector();
  const pieces = Buffer.isBuffer(envelope) ? [envelope] : envelope;
  const opened = await openEnvelope(Readable.from(pieces), {
    recipient: w.parties[party]!.recipient,
    resolveSender: w.ring.signerLookup(),
    replay: new MemoryReplayStore(),
    quarantine: { writable: sink },
    ...extra,
  });
  return { opened, plaintext: sink.data };
}

/** Byte offsets of the parts of an envelope, read with the documented layout. */
export interface Layout {
  headerStart: number;
  headerEnd: number;
  headerSigEnd: number;
  chunks: Array<{ start: number; body: number; tag: number; end: number; kind: number; len: number }>;
  trailer: { start: number; body: number; sig: number; end: number };
}

/** Walks an envelope buffer frame by frame (test-side reader, independent of openEnvelope). */
export function layout(env: Buffer): Layout {
  const headerLen = env.readUInt32BE(5);
  const headerStart = 9;
  const headerEnd = headerStart + headerLen;
  const headerSigEnd = headerEnd + 64;
  const chunks: Layout['chunks'] = [];
  let pos = headerSigEnd;
  for (;;) {
    const kind = env.readUInt8(pos);
    const len = env.readUInt32BE(pos + 5);
    if (kind === 0x54) {
      const trailer = { start: pos, body: pos + 9, sig: pos + 9 + len, end: pos + 9 + len + 64 };
      return { headerStart, headerEnd, headerSigEnd, chunks, trailer };
    }
    chunks.push({ start: pos, body: pos + 9, tag: pos + 9 + len, end: pos + 9 + len + 16, kind, len });
    pos += 9 + len + 16;
  }
}

/** A copy of `buf` with bit `bit` of byte `at` flipped. */
export function flip(buf: Buffer, at: number, bit = 0): Buffer {
  const out = Buffer.from(buf);
  out[at] = (out[at] as number) ^ (1 << bit);
  return out;
}
