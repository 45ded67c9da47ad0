import { createDecipheriv, createHash, timingSafeEqual, verify, type Hash, type KeyObject } from 'node:crypto';
import { Readable } from 'node:stream';
import type { VerifiedKeyBundle } from '../../certs/index.ts';
import { CryptoError, type CryptoErrorCode, type EnvelopeContext } from './errors.ts';
import {
  type BatchItem,
  ENVELOPE_MAGIC,
  ENVELOPE_VERSION,
  FRAME_HEADER_BYTES,
  FrameKind,
  MAX_HEADER_BYTES,
  MAX_TRAILER_BYTES,
  PREAMBLE_BYTES,
  SIGNATURE_BYTES,
  TAG_BYTES,
  chunkNonce,
  metaSchema,
  parseHeader,
  parseTrailer,
  type EnvelopeHeader,
  type EnvelopeMeta,
} from './format.ts';
import { deriveContentKeys, openMeta, unwrapContentKey } from './keys.ts';
import { ByteReader, chunksOf } from './reader.ts';
import { DEFAULT_MAX_CLOCK_SKEW_MS, DEFAULT_REPLAY_WINDOW_MS, replayKey, type ReplayStore } from './replay.ts';
import { openQuarantine, type Quarantine, type QuarantineTarget } from './sink.ts';

/** One of the recipient's own X25519 private keys (several during a key rotation). */
export interface DecryptionKey {
  kid: string;
  privateKey: KeyObject;
}

/** The recipient's identity and private decryption keys. */
export interface RecipientKeys {
  agent: string;
  keys: readonly DecryptionKey[];
}

/**
 * Finds the verified key bundle of `agent` whose signing key id is `kid` (e.g.
 * `KeyRing.signerLookup()`); returns undefined or throws when none is trusted.
 */
export type SenderLookup = (agent: string, kid: string, at: Date) => Promise<VerifiedKeyBundle | undefined> | VerifiedKeyBundle | undefined;

/** How long a refused envelope whose trailer arrived waits for its source to end before it is cut off. */
export const DEFAULT_END_WAIT_MS = 5_000;

/** Options of {@link openEnvelope}. */
export interface OpenOptions {
  recipient: RecipientKeys;
  resolveSender: SenderLookup;
  /** Where plaintext goes until everything verifies. */
  quarantine: QuarantineTarget;
  /** Seen exchange ids; a successful open records the envelope's id. */
  replay: ReplayStore;
  /** Oldest envelope accepted and how long ids are remembered (default {@link DEFAULT_REPLAY_WINDOW_MS}). */
  replayWindowMs?: number | undefined;
  /** Allowed clock skew for envelopes from the future (default {@link DEFAULT_MAX_CLOCK_SKEW_MS}). */
  maxClockSkewMs?: number | undefined;
  /** Clock (default: the system clock). */
  now?: (() => Date) | undefined;
  /** How long a refused envelope whose trailer arrived waits for its source to end (default {@link DEFAULT_END_WAIT_MS}). */
  endWaitMs?: number | undefined;
}

/** A verified envelope whose plaintext is complete in the quarantine. */
export interface OpenedEnvelope {
  exchangeId: string;
  from: string;
  to: string[];
  created: Date;
  contentType: string;
  consentRef: string | null;
  /** The patient the content is about as the sender checked it (signed, encrypted), when the sender named one. */
  patient?: string | undefined;
  contentLength: number;
  /** SHA-256 of the plaintext, base64url. */
  contentSha256: string;
  /** SHA-256 of the header bytes, base64url. */
  headerHash: string;
  chunks: number;
  /** The sender's bundle the signatures were checked against. */
  sender: VerifiedKeyBundle;
  /** The quarantine file, when the target was a path or a directory. */
  path: string | undefined;
  /** The plaintext, when the target was memory. */
  content?: Buffer | undefined;
  /**
   * A batch envelope's exchanges, in plaintext order, each checked against
   * its signed length and SHA-256 (`offset` locates its body in the plaintext).
   */
  items?: OpenedItem[] | undefined;
}

/** One verified exchange of a batch envelope. */
export interface OpenedItem extends BatchItem {
  offset: number;
}

/**
 * Hashes a batch's plaintext per item as it streams by; `finish` says which
 * check failed, if any.
 */
class ItemHasher {
  private index = 0;
  private left: number;
  private readonly hashes: Hash[];

  constructor(private readonly items: readonly BatchItem[]) {
    this.hashes = items.map(() => createHash('sha256'));
    this.left = (items[0] as BatchItem).length;
  }

  /** False when the plaintext runs past the last item. */
  update(plain: Buffer): boolean {
    let at = 0;
    while (at < plain.length) {
      while (this.left === 0 && this.index < this.items.length - 1) {
        this.index += 1;
        this.left = (this.items[this.index] as BatchItem).length;
      }
      if (this.left === 0) return false;
      const take = Math.min(this.left, plain.length - at);
      (this.hashes[this.index] as Hash).update(take === plain.length ? plain : plain.subarray(at, at + take));
      at += take;
      this.left -= take;
    }
    return true;
  }

  /** The items with their offsets, or the failure. */
  finish(contentLength: number): { items: OpenedItem[] } | { code: CryptoErrorCode; message: string } {
    const listed = this.items.reduce((sum, i) => sum + i.length, 0);
    if (listed !== contentLength)
      return { code: 'ERR_ENVELOPE_MALFORMED', message: `the batch items add up to ${listed} bytes, the content is ${contentLength}` };
    let offset = 0;
    const out: OpenedItem[] = [];
    for (const [i, item] of this.items.entries()) {
      if (!eq((this.hashes[i] as Hash).digest(), Buffer.from(item.sha256, 'base64url')))
        return { code: 'ERR_ENVELOPE_TAMPERED', message: `batch item ${i} differs from its signed hash` };
      out.push({ ...item, offset });
      offset += item.length;
    }
    return { items: out };
  }
}

const eq = (a: Buffer, b: Buffer): boolean => a.length === b.length && timingSafeEqual(a, b);

function fail(code: CryptoErrorCode, message: string, context: EnvelopeContext, cause?: unknown): never {
  throw new CryptoError(code, message, { context, cause });
}

/**
 * Reads an envelope, verifies the header, every chunk, the trailer signature,
 * the content hash and length, and that it was not opened before, writing
 * plaintext to the quarantine. Resolves only when all of that held; otherwise
 * rejects with a CryptoError `ERR_ENVELOPE_*`, the quarantine is discarded
 * (file deleted, writable destroyed) and the source is stopped.
 */
export async function openEnvelope(source: AsyncIterable<Uint8Array>, options: OpenOptions): Promise<OpenedEnvelope> {
  if (!options?.recipient?.agent || !Array.isArray(options.recipient.keys)) throw new TypeError('recipient must name the agent and its decryption keys');
  if (typeof options.resolveSender !== 'function') throw new TypeError('resolveSender must be a function');
  if (!options.replay || typeof options.replay.add !== 'function') throw new TypeError('replay must be a ReplayStore');
  if (!options.quarantine) throw new TypeError('quarantine must name a path, a directory, a writable or memory');
  const reader = new ByteReader((source instanceof Readable ? chunksOf(source) : source)[Symbol.asyncIterator]());
  const quarantine = await openQuarantine(options.quarantine);
  try {
    const { opened, replay } = await readEnvelope(reader, options, quarantine);
    await quarantine.commit();
    if (quarantine.content) opened.content = quarantine.content;
    // Recorded only after the plaintext is durable, so a failed delivery can be retried.
    if (!(await options.replay.add(replay.key, replay.expiresAt, replay.now))) {
      throw new CryptoError('ERR_ENVELOPE_REPLAYED', `exchange ${opened.exchangeId} from '${opened.from}' was already opened`, { context: reader.context });
    }
    return opened;
  } catch (err) {
    const error =
      err instanceof CryptoError
        ? err
        : new CryptoError('ERR_ENVELOPE_MALFORMED', `envelope could not be processed: ${(err as Error).message}`, { cause: err, context: reader.context });
    await quarantine.discard(error);
    await stopSource(reader, source, options.endWaitMs ?? DEFAULT_END_WAIT_MS);
    throw error;
  }
}

/**
 * Stops the source of a refused envelope. One refused after its trailer (a
 * signature, hash or count that does not match) has nothing left to send
 * but its end: waiting for it lets the transfer complete, as every byte was
 * carried, so the relay meters it whichever of the refusal and the sender's
 * end reaches it first. A byte more, a failing source or a stall of
 * `waitMs` cuts it off, as does a refusal before the trailer.
 */
async function stopSource(reader: ByteReader, source: AsyncIterable<Uint8Array>, waitMs: number): Promise<void> {
  if (reader.whole && source instanceof Readable) {
    // Destroying the source wakes a read that waits for bytes that never come.
    const timer = setTimeout(() => source.destroy(), waitMs);
    try {
      if (await reader.endsCleanly()) return;
    } finally {
      clearTimeout(timer);
    }
  }
  await reader.release();
}

async function readHeader(reader: ByteReader): Promise<{ header: EnvelopeHeader; bytes: Buffer; sig: Buffer }> {
  const pre = await reader.read(PREAMBLE_BYTES, 'preamble');
  if (!pre.subarray(0, 4).equals(ENVELOPE_MAGIC)) fail('ERR_ENVELOPE_MALFORMED', 'not an envelope (bad magic bytes)', {});
  if (pre.readUInt8(4) !== ENVELOPE_VERSION) fail('ERR_ENVELOPE_MALFORMED', `unsupported envelope version ${pre.readUInt8(4)}`, {});
  const len = pre.readUInt32BE(5);
  if (len < 2 || len > MAX_HEADER_BYTES) fail('ERR_ENVELOPE_MALFORMED', `envelope header length ${len} is outside 2..${MAX_HEADER_BYTES}`, {});
  const bytes = Buffer.from(await reader.read(len, 'header'));
  const header = parseHeader(bytes);
  const sig = Buffer.from(await reader.read(SIGNATURE_BYTES, 'header signature'));
  return { header, bytes, sig };
}

async function readEnvelope(
  reader: ByteReader,
  o: OpenOptions,
  quarantine: Quarantine,
): Promise<{ opened: OpenedEnvelope; replay: { key: string; expiresAt: Date; now: Date } }> {
  const now = (o.now ?? (() => new Date()))();
  const window = o.replayWindowMs ?? DEFAULT_REPLAY_WINDOW_MS;
  const skew = o.maxClockSkewMs ?? DEFAULT_MAX_CLOCK_SKEW_MS;
  const me = o.recipient.agent;

  const { header, bytes: headerBytes, sig: headerSig } = await readHeader(reader);
  const headerHash = createHash('sha256').update(headerBytes).digest();
  const ctx: EnvelopeContext = { exchangeId: header.exchangeId, from: header.from, headerHash: headerHash.toString('base64url') };
  reader.context = ctx;

  const mine = header.to.find((r) => r.agent === me);
  if (!mine) fail('ERR_ENVELOPE_WRONG_RECIPIENT', `envelope is addressed to ${header.to.map((r) => r.agent).join(', ')}, not to '${me}'`, ctx);
  const key = o.recipient.keys.find((k) => k.kid === mine.kid);
  if (!key) fail('ERR_ENVELOPE_WRONG_RECIPIENT', `envelope is sealed to key ${mine.kid}, which '${me}' does not hold`, ctx);

  const created = new Date(header.created);
  if (created.getTime() < now.getTime() - window) fail('ERR_ENVELOPE_STALE', `envelope was created ${header.created}, before the replay window`, ctx);
  if (created.getTime() > now.getTime() + skew) fail('ERR_ENVELOPE_STALE', `envelope was created ${header.created}, in the future`, ctx);

  let sender: VerifiedKeyBundle | undefined;
  try {
    sender = await o.resolveSender(header.from, header.senderKid, now);
  } catch (err) {
    fail('ERR_ENVELOPE_UNTRUSTED_SENDER', `no trusted key bundle for sender '${header.from}' key ${header.senderKid}: ${(err as Error).message}`, ctx, err);
  }
  if (!sender || sender.agent !== header.from || sender.signingKid !== header.senderKid) {
    fail('ERR_ENVELOPE_UNTRUSTED_SENDER', `no trusted key bundle for sender '${header.from}' key ${header.senderKid}`, ctx);
  }
  if (!verify(null, headerBytes, sender.signingKey, headerSig)) fail('ERR_ENVELOPE_BAD_SIGNATURE', `envelope header is not signed by '${header.from}'`, ctx);

  const rkey = replayKey(header.from, header.exchangeId);
  if (await o.replay.has(rkey, now)) fail('ERR_ENVELOPE_REPLAYED', `exchange ${header.exchangeId} from '${header.from}' was already opened`, ctx);

  const cek = unwrapContentKey(mine.cek, header.from, me, mine.kid, key.privateKey, ctx);
  const keys = deriveContentKeys(cek);
  cek.fill(0);
  if (!eq(keys.commitment, Buffer.from(header.keyCommitment, 'base64url')))
    fail('ERR_ENVELOPE_TAMPERED', "the content key does not match the header's key commitment", ctx);
  const metaParsed = metaSchema.safeParse(openMeta(header.meta, keys.meta, ctx));
  if (!metaParsed.success) fail('ERR_ENVELOPE_MALFORMED', 'the encrypted header metadata is malformed', ctx);
  const meta: EnvelopeMeta = metaParsed.data;
  const toNames = header.to.map((r) => r.agent);
  if (meta.exchangeId !== header.exchangeId || meta.from !== header.from || meta.to.join('\n') !== toNames.join('\n')) {
    fail('ERR_ENVELOPE_TAMPERED', 'the encrypted party names differ from the header', ctx);
  }

  const hash = createHash('sha256');
  const itemHasher = meta.items ? new ItemHasher(meta.items) : undefined;
  const prefix = Buffer.from(header.noncePrefix, 'base64url');
  let seq = 0;
  let length = 0;
  for (;;) {
    const fh = await reader.read(FRAME_HEADER_BYTES, 'frame header');
    const kind = fh.readUInt8(0);
    const frameSeq = fh.readUInt32BE(1);
    const len = fh.readUInt32BE(5);
    if (kind === FrameKind.trailer) fail('ERR_ENVELOPE_TRUNCATED', `the final chunk is missing (trailer after ${seq} chunks)`, ctx);
    if (kind !== FrameKind.chunk && kind !== FrameKind.final) fail('ERR_ENVELOPE_MALFORMED', `unknown frame kind 0x${kind.toString(16)}`, ctx);
    if (frameSeq !== seq) fail('ERR_ENVELOPE_REORDERED', `chunk ${frameSeq} arrived where chunk ${seq} belongs`, ctx);
    const final = kind === FrameKind.final;
    if (len > header.chunkSize || (!final && len !== header.chunkSize))
      fail('ERR_ENVELOPE_MALFORMED', `chunk ${seq} has length ${len} (chunk size ${header.chunkSize})`, ctx);
    const decipher = createDecipheriv('aes-256-gcm', keys.payload, chunkNonce(prefix, seq, final));
    decipher.setAAD(headerHash);
    for await (const piece of reader.pieces(len, `chunk ${seq}`)) {
      const plain = decipher.update(piece);
      hash.update(plain);
      if (itemHasher && !itemHasher.update(plain)) fail('ERR_ENVELOPE_MALFORMED', 'the content runs past the last batch item', ctx);
      await quarantine.write(plain);
    }
    decipher.setAuthTag(Buffer.from(await reader.read(TAG_BYTES, `tag of chunk ${seq}`)));
    try {
      decipher.final();
    } catch (err) {
      fail('ERR_ENVELOPE_TAMPERED', `chunk ${seq} does not authenticate`, ctx, err);
    }
    length += len;
    seq += 1;
    if (final) break;
  }
  keys.payload.fill(0);

  const th = await reader.read(FRAME_HEADER_BYTES, 'trailer frame');
  const tlen = th.readUInt32BE(5);
  if (th.readUInt8(0) !== FrameKind.trailer) fail('ERR_ENVELOPE_MALFORMED', 'expected the trailer after the final chunk', ctx);
  if (th.readUInt32BE(1) !== seq) fail('ERR_ENVELOPE_TAMPERED', 'the trailer frame counts a different number of chunks', ctx);
  if (tlen < 2 || tlen > MAX_TRAILER_BYTES) fail('ERR_ENVELOPE_MALFORMED', `trailer length ${tlen} is outside 2..${MAX_TRAILER_BYTES}`, ctx);
  const trailerBytes = Buffer.from(await reader.read(tlen, 'trailer'));
  const trailerSig = await reader.read(SIGNATURE_BYTES, 'trailer signature');
  // Every byte the sender meant to send is here: a refusal from now on lets the transfer end (see openEnvelope).
  reader.whole = true;
  const trailer = parseTrailer(trailerBytes, ctx);
  if (!verify(null, trailerBytes, sender.signingKey, trailerSig)) fail('ERR_ENVELOPE_BAD_SIGNATURE', `envelope trailer is not signed by '${header.from}'`, ctx);
  const contentSha256 = hash.digest();
  if (
    trailer.exchangeId !== header.exchangeId ||
    trailer.from !== header.from ||
    trailer.to.join('\n') !== toNames.join('\n') ||
    !eq(Buffer.from(trailer.headerHash, 'base64url'), headerHash) ||
    trailer.keyCommitment !== header.keyCommitment
  ) {
    fail('ERR_ENVELOPE_TAMPERED', 'the signed trailer belongs to another header', ctx);
  }
  if (trailer.chunks !== seq || trailer.contentLength !== length)
    fail('ERR_ENVELOPE_TRUNCATED', `the trailer counts ${trailer.chunks} chunks / ${trailer.contentLength} bytes, received ${seq} / ${length}`, ctx);
  if (!eq(Buffer.from(trailer.contentSha256, 'base64url'), contentSha256)) fail('ERR_ENVELOPE_TAMPERED', 'the content hash differs from the signed one', ctx);
  if (!(await reader.atEnd())) fail('ERR_ENVELOPE_MALFORMED', 'bytes follow the trailer', ctx);
  let items: OpenedItem[] | undefined;
  if (itemHasher) {
    const checked = itemHasher.finish(length);
    if ('code' in checked) fail(checked.code, checked.message, ctx);
    items = checked.items;
  }

  const replay = { key: rkey, expiresAt: new Date(created.getTime() + window + skew), now };
  const opened: OpenedEnvelope = {
    exchangeId: header.exchangeId,
    from: header.from,
    to: toNames,
    created,
    contentType: meta.contentType,
    consentRef: meta.consentRef,
    ...(meta.patient !== undefined ? { patient: meta.patient } : {}),
    contentLength: length,
    contentSha256: trailer.contentSha256,
    headerHash: ctx.headerHash as string,
    chunks: seq,
    sender,
    path: quarantine.path,
    ...(items ? { items } : {}),
  };
  return { opened, replay };
}
