import { z } from 'zod';
import { HOSPITAL_ID_PATTERN } from '../certs/index.ts';
import { LedgerError } from './errors.ts';
import { checkpointSchema, signedHeadSchema, type SignedCheckpoint, type SignedHead } from './heads.ts';
import { MAX_NOTE_BYTES } from './note.ts';
import { MAX_ENTRY_BYTES } from './schema.ts';

/** Checkpoint notes one witness gossip message carries at most. */
export const MAX_WITNESS_NOTES = 32;
/** Evidence items one witness gossip message carries at most. */
export const MAX_WITNESS_EVIDENCE = 16;

/** Largest replication message, encoded, in bytes. */
export const DEFAULT_MAX_MESSAGE_BYTES = 1_048_576;
/** Most entries one range message may carry (and one want may ask for). */
export const MAX_RANGE_ENTRIES = 1024;
/** Most signed heads one heads message may carry. */
export const MAX_HEADS_PER_MESSAGE = 256;

const feed = z.string().regex(HOSPITAL_ID_PATTERN);
const seq = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const b64 = z
  .string()
  .regex(/^[A-Za-z0-9+/]*={0,2}$/)
  .max(Math.ceil((MAX_ENTRY_BYTES * 4) / 3) + 4);

const messageSchema = z.discriminatedUnion('t', [
  z.strictObject({ t: z.literal('heads'), heads: z.array(signedHeadSchema).max(MAX_HEADS_PER_MESSAGE), checkpoint: checkpointSchema.optional() }),
  z.strictObject({ t: z.literal('want'), feed, from: seq, max: z.number().int().min(1).max(MAX_RANGE_ENTRIES) }),
  z.strictObject({
    t: z.literal('range'),
    feed,
    from: seq,
    entries: z.array(b64).min(1).max(MAX_RANGE_ENTRIES),
    head: signedHeadSchema,
    checkpoint: z.string().max(MAX_NOTE_BYTES).optional(),
  }),
  z.strictObject({ t: z.literal('none'), feed, from: seq, reason: z.enum(['unknown-feed', 'stopped', 'no-head']) }),
  z.strictObject({
    t: z.literal('witness'),
    notes: z.array(z.strictObject({ feed, note: z.string().max(MAX_NOTE_BYTES) })).max(MAX_WITNESS_NOTES),
    evidence: z
      .array(z.strictObject({ feed, notes: z.array(z.string().max(MAX_NOTE_BYTES)).length(2) }))
      .max(MAX_WITNESS_EVIDENCE)
      .optional(),
  }),
]);

/**
 * A replication message: gossip of signed heads (and a checkpoint), a request
 * for a range, a range (with, when the sender holds one, the feed author's
 * signed tlog checkpoint of the tree ending at the range's head), a refusal,
 * or witness gossip (checkpoints with cosignatures, split-view evidence: witness.ts).
 */
export type ReplicationMessage =
  | { t: 'heads'; heads: SignedHead[]; checkpoint?: SignedCheckpoint }
  | { t: 'want'; feed: string; from: number; max: number }
  | { t: 'range'; feed: string; from: number; entries: string[]; head: SignedHead; checkpoint?: string }
  | { t: 'none'; feed: string; from: number; reason: 'unknown-feed' | 'stopped' | 'no-head' }
  | { t: 'witness'; notes: Array<{ feed: string; note: string }>; evidence?: Array<{ feed: string; notes: string[] }> };

/** Encodes a message as JSON text; throws ERR_LEDGER_MESSAGE_TOO_LARGE past `maxBytes`. */
export function encodeMessage(message: ReplicationMessage, maxBytes = DEFAULT_MAX_MESSAGE_BYTES): string {
  const text = JSON.stringify(message);
  if (Buffer.byteLength(text) > maxBytes)
    throw new LedgerError('ERR_LEDGER_MESSAGE_TOO_LARGE', `replication message of ${Buffer.byteLength(text)} bytes exceeds ${maxBytes}`);
  return text;
}

/** Decodes and validates a message from a peer; anything malformed throws ERR_LEDGER_MESSAGE_INVALID. */
export function decodeMessage(data: string | Uint8Array, maxBytes = DEFAULT_MAX_MESSAGE_BYTES): ReplicationMessage {
  const size = typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength;
  if (size > maxBytes) throw new LedgerError('ERR_LEDGER_MESSAGE_TOO_LARGE', `replication message of ${size} bytes exceeds ${maxBytes}`);
  let value: unknown;
  try {
    value = JSON.parse(typeof data === 'string' ? data : Buffer.from(data).toString('utf8'));
  } catch {
    throw new LedgerError('ERR_LEDGER_MESSAGE_INVALID', 'replication message is not JSON');
  }
  const r = messageSchema.safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new LedgerError(
      'ERR_LEDGER_MESSAGE_INVALID',
      `replication message is malformed at ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`,
    );
  }
  return r.data as ReplicationMessage;
}
