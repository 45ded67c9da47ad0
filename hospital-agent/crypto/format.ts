import { z } from 'zod';
import { HOSPITAL_ID_PATTERN, jcs } from '../../certs/index.ts';
import { CryptoError, type CryptoErrorCode, type EnvelopeContext } from './errors.ts';

/** First bytes of every envelope: 0x89 'H' 'E' 'N' (the high bit catches 7-bit transports, like PNG). */
export const ENVELOPE_MAGIC: Buffer = Buffer.from([0x89, 0x48, 0x45, 0x4e]);
/** Version byte of the envelope layout described in docs/security.md. */
export const ENVELOPE_VERSION = 1;
/** Cipher suite name carried in the header. */
export const ENVELOPE_SUITE = 'A256GCM-STREAM+ECDH-ES+A256KW+Ed25519';
/** Default plaintext bytes per chunk (1 MiB): large chunks keep per-chunk overhead negligible. */
export const DEFAULT_CHUNK_SIZE = 1024 * 1024;
/** Smallest chunk size a sealer may choose. */
export const MIN_CHUNK_SIZE = 16;
/** Largest chunk size an opener accepts: bounds the memory a hostile header can ask for. */
export const MAX_CHUNK_SIZE = 16 * 1024 * 1024;
/** Largest header JSON an opener reads. */
export const MAX_HEADER_BYTES = 64 * 1024;
/** Largest trailer JSON an opener reads. */
export const MAX_TRAILER_BYTES = 4096;
/** Most recipients one envelope may name. */
export const MAX_RECIPIENTS = 16;
/** Most chunks one envelope may hold (the nonce counter is 32 bits). */
export const MAX_CHUNKS = 0xffff_ffff;

/** magic(4) + version(1) + header length(4). */
export const PREAMBLE_BYTES = 9;
/** kind(1) + sequence(4) + body length(4). */
export const FRAME_HEADER_BYTES = 9;
/** AES-GCM tag after each chunk's ciphertext. */
export const TAG_BYTES = 16;
/** Ed25519 signature after the header and after the trailer. */
export const SIGNATURE_BYTES = 64;
/** Random part of the 12-byte chunk nonce. */
export const NONCE_PREFIX_BYTES = 7;

/** Most exchanges one batch envelope may carry. */
export const MAX_BATCH_ITEMS = 64;
/**
 * Media type of a batch envelope's plaintext: the bodies of several small
 * exchanges back to back, each named in the encrypted metadata (`items`).
 */
export const BATCH_CONTENT_TYPE = 'application/vnd.hie.batch';

/** Frame kinds. */
export const FrameKind = { chunk: 0x43, final: 0x46, trailer: 0x54 } as const;

const B64URL = /^[A-Za-z0-9_-]*$/;
const b64 = (bytes: number) =>
  z
    .string()
    .regex(B64URL)
    .length(Math.ceil((bytes * 4) / 3));
/** Exchange ids: idempotency keys chosen by the sender (e.g. UUIDs). */
export const EXCHANGE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
const agentId = z.string().regex(HOSPITAL_ID_PATTERN);

const headerSchema = z.strictObject({
  type: z.literal('hie.envelope.header'),
  v: z.literal(ENVELOPE_VERSION),
  suite: z.literal(ENVELOPE_SUITE),
  exchangeId: z.string().regex(EXCHANGE_ID_PATTERN),
  from: agentId,
  senderKid: b64(32),
  to: z
    .array(
      z.strictObject({
        agent: agentId,
        kid: b64(32),
        cek: z
          .string()
          .max(4096)
          .regex(/^[A-Za-z0-9_.-]+$/),
      }),
    )
    .min(1)
    .max(MAX_RECIPIENTS),
  created: z.iso.datetime(),
  chunkSize: z.number().int().min(MIN_CHUNK_SIZE).max(MAX_CHUNK_SIZE),
  noncePrefix: b64(NONCE_PREFIX_BYTES),
  keyCommitment: b64(32),
  // A batch's item list makes the metadata larger: 64 items of about 200 bytes of JSON each.
  meta: z.strictObject({ iv: b64(12), ct: z.string().regex(B64URL).max(32_768), tag: b64(16) }),
});

/** The envelope header (JCS JSON, sent in the clear, signed by the sender): routing data only; the rest is in `meta`. */
export type EnvelopeHeader = z.infer<typeof headerSchema>;

/**
 * A content type as the recipient's API will serve it back (a `Content-Type`
 * header): printable ASCII only, no control characters, which a header may
 * not carry.
 */
const contentType = z.string().regex(/^[\x21-\x7e][\x20-\x7e]{0,254}$/, 'must be printable ASCII (a media type)');

/**
 * Longest `patient` in the encrypted metadata: the patient the release is
 * about as the sender checked it in the content (`system|value`, `|value`
 * for no system, a bare `value` for any system), for the recipient to check
 * the content against. Encrypted and signed with the rest of `meta`; absent
 * from envelopes of senders before it existed.
 */
export const PATIENT_MAX = 320;

/** One exchange of a batch envelope: where its body is in the plaintext (in order), and what it is. */
export const batchItemSchema = z.strictObject({
  exchangeId: z.string().regex(EXCHANGE_ID_PATTERN),
  contentType,
  consentRef: z.string().min(1).max(256).nullable(),
  patient: z.string().min(1).max(PATIENT_MAX).optional(),
  length: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  sha256: b64(32),
});

/** An item of a batch envelope's metadata. */
export type BatchItem = z.infer<typeof batchItemSchema>;

/**
 * The part of the header encrypted with the content key: both party names
 * again, and the descriptive fields. A batch envelope (content type
 * {@link BATCH_CONTENT_TYPE}) also lists its exchanges in `items`.
 */
export const metaSchema = z
  .strictObject({
    exchangeId: z.string().regex(EXCHANGE_ID_PATTERN),
    from: agentId,
    to: z.array(agentId).min(1).max(MAX_RECIPIENTS),
    contentType,
    consentRef: z.string().min(1).max(256).nullable(),
    patient: z.string().min(1).max(PATIENT_MAX).optional(),
    items: z.array(batchItemSchema).min(1).max(MAX_BATCH_ITEMS).optional(),
  })
  .refine((m) => (m.contentType === BATCH_CONTENT_TYPE) === (m.items !== undefined), {
    message: `a batch names its items and has content type ${BATCH_CONTENT_TYPE}; nothing else does`,
  })
  .refine((m) => m.items === undefined || new Set(m.items.map((i) => i.exchangeId)).size === m.items.length, { message: 'a batch names an exchange twice' });

/** Decrypted header metadata. */
export type EnvelopeMeta = z.infer<typeof metaSchema>;

const trailerSchema = z.strictObject({
  type: z.literal('hie.envelope.trailer'),
  v: z.literal(ENVELOPE_VERSION),
  exchangeId: z.string().regex(EXCHANGE_ID_PATTERN),
  from: agentId,
  to: z.array(agentId).min(1).max(MAX_RECIPIENTS),
  headerHash: b64(32),
  keyCommitment: b64(32),
  contentSha256: b64(32),
  contentLength: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  chunks: z.number().int().min(1).max(MAX_CHUNKS),
});

/** The trailer: signed by the sender after the last chunk. */
export type EnvelopeTrailer = z.infer<typeof trailerSchema>;

function fail(code: CryptoErrorCode, message: string, context: EnvelopeContext, cause?: unknown): never {
  throw new CryptoError(code, message, { context, cause });
}

/**
 * Parses signed JSON from the wire: it must be valid UTF-8 JSON, match the
 * schema, and be exactly its own JCS form (so there is one byte string per value).
 */
function parseCanonical<T>(bytes: Buffer, schema: z.ZodType<T>, what: string, context: EnvelopeContext): T {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (err) {
    fail('ERR_ENVELOPE_MALFORMED', `envelope ${what} is not UTF-8 JSON`, context, err);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    fail('ERR_ENVELOPE_MALFORMED', `envelope ${what} is malformed at ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`, context);
  }
  if (!jcs(parsed.data).equals(bytes)) fail('ERR_ENVELOPE_MALFORMED', `envelope ${what} is not in canonical (JCS) form`, context);
  return parsed.data;
}

/** Parses and checks header bytes; throws ERR_ENVELOPE_MALFORMED. */
export function parseHeader(bytes: Buffer): EnvelopeHeader {
  const header = parseCanonical(bytes, headerSchema, 'header', {});
  const agents = header.to.map((r) => r.agent);
  if (new Set(agents).size !== agents.length)
    fail('ERR_ENVELOPE_MALFORMED', 'envelope header names a recipient twice', { exchangeId: header.exchangeId, from: header.from });
  return header;
}

/** Parses and checks trailer bytes; throws ERR_ENVELOPE_MALFORMED. */
export function parseTrailer(bytes: Buffer, context: EnvelopeContext): EnvelopeTrailer {
  return parseCanonical(bytes, trailerSchema, 'trailer', context);
}

/** The preamble: magic, version, header length. */
export function encodePreamble(headerLength: number): Buffer {
  const b = Buffer.alloc(PREAMBLE_BYTES);
  ENVELOPE_MAGIC.copy(b, 0);
  b.writeUInt8(ENVELOPE_VERSION, 4);
  b.writeUInt32BE(headerLength, 5);
  return b;
}

/** A frame header: kind, sequence number, body length. */
export function encodeFrameHeader(kind: number, seq: number, length: number): Buffer {
  const b = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  b.writeUInt8(kind, 0);
  b.writeUInt32BE(seq, 1);
  b.writeUInt32BE(length, 5);
  return b;
}

/** The 12-byte nonce of chunk `seq`: random prefix, big-endian counter, final flag. */
export function chunkNonce(prefix: Buffer, seq: number, final: boolean): Buffer {
  const n = Buffer.allocUnsafe(12);
  prefix.copy(n, 0, 0, NONCE_PREFIX_BYTES);
  n.writeUInt32BE(seq, NONCE_PREFIX_BYTES);
  n.writeUInt8(final ? 1 : 0, 11);
  return n;
}
