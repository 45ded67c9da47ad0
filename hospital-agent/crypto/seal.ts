import { createCipheriv, createHash, randomBytes, sign, type Hash, type KeyObject } from 'node:crypto';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { isHospitalId, jcs, type VerifiedKeyBundle } from '../../certs/index.ts';
import {
  BATCH_CONTENT_TYPE,
  DEFAULT_CHUNK_SIZE,
  ENVELOPE_SUITE,
  ENVELOPE_VERSION,
  EXCHANGE_ID_PATTERN,
  FrameKind,
  MAX_BATCH_ITEMS,
  MAX_CHUNKS,
  MAX_CHUNK_SIZE,
  MAX_RECIPIENTS,
  MIN_CHUNK_SIZE,
  NONCE_PREFIX_BYTES,
  chunkNonce,
  encodeFrameHeader,
  encodePreamble,
  type EnvelopeHeader,
  type EnvelopeTrailer,
  PATIENT_MAX,
} from './format.ts';
import { CryptoError } from './errors.ts';
import { deriveContentKeys, sealMeta, wrapContentKey } from './keys.ts';

/** The sender's own signing key, as the sealer needs it. */
export interface SenderKeys {
  /** The sender's agent id (must match its certificate, or recipients refuse the envelope). */
  agent: string;
  /** RFC 7638 thumbprint of the signing key, as published in the sender's key bundle. */
  signingKid: string;
  /** The Ed25519 private key. */
  signingKey: KeyObject;
}

/** Options of {@link SealStream}. */
export interface SealOptions {
  /** Idempotency key of the exchange, unique per sender: `[A-Za-z0-9][A-Za-z0-9._:-]{0,127}`. */
  exchangeId: string;
  sender: SenderKeys;
  /** Each recipient's key bundle, verified against the CA and CRL (see KeyRing). */
  recipients: readonly VerifiedKeyBundle[];
  /** Media type of the plaintext, e.g. `application/fhir+json` (encrypted in the envelope). */
  contentType: string;
  /** Reference of the consent the release is made under (encrypted in the envelope). */
  consentRef?: string | null | undefined;
  /** The patient the content is about, as the sender checked it (encrypted in the envelope; see `PATIENT_MAX`). */
  patient?: string | undefined;
  /** Plaintext bytes per chunk (default {@link DEFAULT_CHUNK_SIZE}). */
  chunkSize?: number | undefined;
  /** Creation time written to the header (default: now). */
  now?: Date | undefined;
  /**
   * The plaintext's SHA-256 and length as the caller already computed them
   * (e.g. while storing the body it streams in), asked for once, after the
   * last byte: the sealer then does not hash the content a second time. A
   * length other than what was sealed fails the envelope (the recipient
   * would refuse it anyway, since it checks the hash).
   */
  knownContent?: (() => { sha256: Buffer; length: number }) | undefined;
  /**
   * Seal a batch: the plaintext is these exchanges' bodies back to back, in
   * this order, each named (with its length and SHA-256) in the encrypted
   * metadata. `exchangeId` then names the batch and `contentType` must be
   * {@link BATCH_CONTENT_TYPE}; the opener checks every item.
   */
  batch?: readonly BatchItemInput[] | undefined;
}

/** One exchange of a batch, as the sealer takes it. */
export interface BatchItemInput {
  exchangeId: string;
  contentType: string;
  consentRef: string | null;
  /** The patient the item is about, as the sender checked it. */
  patient?: string | undefined;
  length: number;
  sha256: Buffer;
}

/** What a sealer knows once the envelope is complete (for the sender's ledger and receipt matching). */
export interface SealSummary {
  exchangeId: string;
  from: string;
  to: string[];
  created: string;
  /** SHA-256 of the header bytes, base64url. */
  headerHash: string;
  /** SHA-256 of the plaintext, base64url. */
  contentSha256: string;
  contentLength: number;
  chunks: number;
  /** Total envelope bytes produced. */
  envelopeLength: number;
}

function validate(o: SealOptions): number {
  if (typeof o.exchangeId !== 'string' || !EXCHANGE_ID_PATTERN.test(o.exchangeId)) throw new TypeError(`exchangeId must match ${EXCHANGE_ID_PATTERN}`);
  if (!isHospitalId(o.sender?.agent)) throw new TypeError('sender.agent must be a hospital id');
  if (o.sender.signingKey?.type !== 'private' || o.sender.signingKey.asymmetricKeyType !== 'ed25519')
    throw new TypeError('sender.signingKey must be an Ed25519 private key');
  if (typeof o.sender.signingKid !== 'string' || o.sender.signingKid.length !== 43) throw new TypeError('sender.signingKid must be the signing key thumbprint');
  if (!Array.isArray(o.recipients) || o.recipients.length === 0 || o.recipients.length > MAX_RECIPIENTS)
    throw new TypeError(`recipients must hold 1 to ${MAX_RECIPIENTS} verified bundles`);
  const names = o.recipients.map((r) => r.agent);
  if (new Set(names).size !== names.length) throw new TypeError('recipients must not repeat an agent');
  for (const r of o.recipients) {
    if (r.encryptionKey?.asymmetricKeyType !== 'x25519') throw new TypeError(`recipient '${r.agent}' has no X25519 key`);
  }
  if (typeof o.contentType !== 'string' || o.contentType.length < 1 || o.contentType.length > 255)
    throw new TypeError('contentType must be 1 to 255 characters');
  if (o.consentRef != null && (typeof o.consentRef !== 'string' || o.consentRef.length < 1 || o.consentRef.length > 256))
    throw new TypeError('consentRef must be 1 to 256 characters or null');
  const badPatient = (p: unknown): boolean => p !== undefined && (typeof p !== 'string' || p.length < 1 || p.length > PATIENT_MAX);
  if (badPatient(o.patient)) throw new TypeError(`patient must be 1 to ${PATIENT_MAX} characters`);
  if (o.batch?.some((i) => badPatient(i.patient))) throw new TypeError(`batch item patient must be 1 to ${PATIENT_MAX} characters`);
  if (o.batch !== undefined) {
    if (!Array.isArray(o.batch) || o.batch.length === 0 || o.batch.length > MAX_BATCH_ITEMS)
      throw new TypeError(`batch must hold 1 to ${MAX_BATCH_ITEMS} items`);
    if (o.contentType !== BATCH_CONTENT_TYPE || o.consentRef != null)
      throw new TypeError(`a batch has contentType ${BATCH_CONTENT_TYPE} and no consentRef (each item names its own)`);
    if (new Set(o.batch.map((i) => i.exchangeId)).size !== o.batch.length) throw new TypeError('batch must not repeat an exchange');
    for (const i of o.batch) {
      if (typeof i.exchangeId !== 'string' || !EXCHANGE_ID_PATTERN.test(i.exchangeId))
        throw new TypeError(`batch item exchangeId must match ${EXCHANGE_ID_PATTERN}`);
      if (typeof i.contentType !== 'string' || i.contentType.length < 1 || i.contentType.length > 255 || i.contentType === BATCH_CONTENT_TYPE)
        throw new TypeError('batch item contentType must be 1 to 255 characters');
      if (i.consentRef !== null && (typeof i.consentRef !== 'string' || i.consentRef.length < 1 || i.consentRef.length > 256))
        throw new TypeError('batch item consentRef must be 1 to 256 characters or null');
      if (!Number.isSafeInteger(i.length) || i.length < 0) throw new TypeError('batch item length must be a non-negative integer');
      if (!Buffer.isBuffer(i.sha256) || i.sha256.length !== 32) throw new TypeError('batch item sha256 must be 32 bytes');
    }
  } else if (o.contentType === BATCH_CONTENT_TYPE) throw new TypeError(`contentType ${BATCH_CONTENT_TYPE} is for batches`);
  const chunkSize = o.chunkSize ?? DEFAULT_CHUNK_SIZE;
  if (!Number.isInteger(chunkSize) || chunkSize < MIN_CHUNK_SIZE || chunkSize > MAX_CHUNK_SIZE)
    throw new TypeError(`chunkSize must be an integer from ${MIN_CHUNK_SIZE} to ${MAX_CHUNK_SIZE}`);
  return chunkSize;
}

/**
 * Turns a plaintext byte stream into an envelope byte stream in one pass:
 * header, AES-256-GCM STREAM chunks, signed trailer. Memory is bounded by one
 * chunk. `summary` resolves when the envelope is complete.
 */
export class SealStream extends Transform {
  /** Resolves after the trailer is written; rejects if sealing fails. */
  readonly summary: Promise<SealSummary>;
  private readonly options: SealOptions;
  private readonly chunkSize: number;
  private readonly hash: Hash = createHash('sha256');
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private seq = 0;
  private contentLength = 0;
  private envelopeLength = 0;
  private payloadKey: Buffer | undefined;
  private noncePrefix: Buffer = randomBytes(NONCE_PREFIX_BYTES);
  private headerHash: Buffer | undefined;
  private header: EnvelopeHeader | undefined;
  private resolveSummary!: (s: SealSummary) => void;
  private rejectSummary!: (e: Error) => void;

  constructor(options: SealOptions) {
    const chunkSize = validate(options);
    super({ readableHighWaterMark: chunkSize + 64, writableHighWaterMark: chunkSize });
    this.options = options;
    this.chunkSize = chunkSize;
    this.summary = new Promise<SealSummary>((res, rej) => {
      this.resolveSummary = res;
      this.rejectSummary = rej;
    });
    // The caller may never await `summary`; its rejection is also the stream's 'error'.
    this.summary.catch(() => undefined);
  }

  override _construct(callback: (error?: Error | null) => void): void {
    try {
      this.buildHeader();
    } catch (err) {
      callback(err as Error);
      return;
    }
    callback();
  }

  private buildHeader(): void {
    const o = this.options;
    const cek = randomBytes(32);
    const keys = deriveContentKeys(cek);
    this.payloadKey = keys.payload;
    const to = o.recipients.map((r) => ({
      agent: r.agent,
      kid: r.encryptionKid,
      cek: wrapContentKey(cek, o.sender.agent, r.agent, r.encryptionKid, r.encryptionKey),
    }));
    cek.fill(0);
    const names = o.recipients.map((r) => r.agent);
    const header: EnvelopeHeader = {
      type: 'hie.envelope.header',
      v: ENVELOPE_VERSION,
      suite: ENVELOPE_SUITE,
      exchangeId: o.exchangeId,
      from: o.sender.agent,
      senderKid: o.sender.signingKid,
      to,
      created: (o.now ?? new Date()).toISOString(),
      chunkSize: this.chunkSize,
      noncePrefix: this.noncePrefix.toString('base64url'),
      keyCommitment: keys.commitment.toString('base64url'),
      meta: sealMeta(
        {
          exchangeId: o.exchangeId,
          from: o.sender.agent,
          to: names,
          contentType: o.contentType,
          consentRef: o.consentRef ?? null,
          ...(o.patient !== undefined ? { patient: o.patient } : {}),
          ...(o.batch
            ? {
                items: o.batch.map((i) => ({
                  exchangeId: i.exchangeId,
                  contentType: i.contentType,
                  consentRef: i.consentRef,
                  ...(i.patient !== undefined ? { patient: i.patient } : {}),
                  length: i.length,
                  sha256: i.sha256.toString('base64url'),
                })),
              }
            : {}),
        },
        keys.meta,
      ),
    };
    const bytes = jcs(header);
    this.header = header;
    this.headerHash = createHash('sha256').update(bytes).digest();
    this.out(encodePreamble(bytes.length));
    this.out(bytes);
    this.out(sign(null, bytes, o.sender.signingKey));
  }

  private out(b: Buffer): void {
    this.envelopeLength += b.length;
    this.push(b);
  }

  override _transform(chunk: Buffer | string, encoding: BufferEncoding, callback: TransformCallback): void {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk, encoding) : chunk;
    if (buf.length === 0) return callback();
    if (!this.options.knownContent) this.hash.update(buf);
    this.contentLength += buf.length;
    this.pending.push(buf);
    this.pendingBytes += buf.length;
    try {
      while (this.pendingBytes >= this.chunkSize) this.encryptChunk(false, this.chunkSize);
    } catch (err) {
      return callback(err as Error);
    }
    callback();
  }

  /** Encrypts the next `length` pending bytes as chunk `seq`, without concatenating them. */
  private encryptChunk(final: boolean, length: number): void {
    if (this.seq >= MAX_CHUNKS) throw new RangeError('envelope exceeds the maximum number of chunks; use a larger chunkSize');
    const cipher = createCipheriv('aes-256-gcm', this.payloadKey as Buffer, chunkNonce(this.noncePrefix, this.seq, final));
    cipher.setAAD(this.headerHash as Buffer);
    this.out(encodeFrameHeader(final ? FrameKind.final : FrameKind.chunk, this.seq, length));
    let left = length;
    while (left > 0) {
      const piece = this.pending[0] as Buffer;
      if (piece.length <= left) {
        this.pending.shift();
        left -= piece.length;
        this.out(cipher.update(piece));
      } else {
        this.pending[0] = piece.subarray(left);
        this.out(cipher.update(piece.subarray(0, left)));
        left = 0;
      }
    }
    this.pendingBytes -= length;
    cipher.final();
    this.out(cipher.getAuthTag());
    this.seq += 1;
  }

  override _flush(callback: TransformCallback): void {
    try {
      this.encryptChunk(true, this.pendingBytes);
      const known = this.options.knownContent?.();
      if (known && known.length !== this.contentLength) {
        throw new CryptoError('ERR_ENVELOPE_MALFORMED', `the sealed content is ${this.contentLength} bytes, not the ${known.length} the caller hashed`);
      }
      const listed = this.options.batch?.reduce((sum, i) => sum + i.length, 0);
      if (listed !== undefined && listed !== this.contentLength) {
        throw new CryptoError('ERR_ENVELOPE_MALFORMED', `the sealed content is ${this.contentLength} bytes, not the ${listed} the batch items add up to`);
      }
      const h = this.header as EnvelopeHeader;
      const trailer: EnvelopeTrailer = {
        type: 'hie.envelope.trailer',
        v: ENVELOPE_VERSION,
        exchangeId: h.exchangeId,
        from: h.from,
        to: h.to.map((r) => r.agent),
        headerHash: (this.headerHash as Buffer).toString('base64url'),
        keyCommitment: h.keyCommitment,
        contentSha256: known ? known.sha256.toString('base64url') : this.hash.digest('base64url'),
        contentLength: this.contentLength,
        chunks: this.seq,
      };
      const bytes = jcs(trailer);
      this.out(encodeFrameHeader(FrameKind.trailer, this.seq, bytes.length));
      this.out(bytes);
      this.out(sign(null, bytes, this.options.sender.signingKey));
      (this.payloadKey as Buffer).fill(0);
      this.resolveSummary({
        exchangeId: h.exchangeId,
        from: h.from,
        to: trailer.to,
        created: h.created,
        headerHash: trailer.headerHash,
        contentSha256: trailer.contentSha256,
        contentLength: trailer.contentLength,
        chunks: trailer.chunks,
        envelopeLength: this.envelopeLength,
      });
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.payloadKey?.fill(0);
    this.rejectSummary(error ?? new Error('sealing was aborted before the envelope was complete'));
    callback(error);
  }
}

/**
 * Seals `source` (a Readable or any async iterable of bytes) and returns the
 * envelope stream; errors of the source destroy the envelope stream.
 */
export function sealEnvelope(source: Readable | AsyncIterable<Uint8Array>, options: SealOptions): SealStream {
  const stream = new SealStream(options);
  const input = source instanceof Readable ? source : Readable.from(source, { objectMode: false });
  input.once('error', (err) => stream.destroy(err));
  stream.once('close', () => {
    if (!input.readableEnded) input.destroy();
  });
  input.pipe(stream);
  return stream;
}
