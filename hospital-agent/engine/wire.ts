import { z } from 'zod';
import { MAX_BATCH_ITEMS } from '../crypto/index.ts';
import { rxWireSchemas } from '../prescriptions/wire.ts';

/**
 * Agent-to-agent small messages over the relay's MESSAGE channel. The first
 * byte says what follows: `L` a ledger replication message (its own codec),
 * `J` one of the JSON messages below. None carries PHI: bundles, receipts
 * and ids only (records travel as end-to-end encrypted envelopes).
 */
export const WIRE_LEDGER = 0x4c; // 'L'
/** Prefix of a JSON agent message. */
export const WIRE_JSON = 0x4a; // 'J'
/** Largest JSON agent message accepted. */
export const MAX_WIRE_JSON_BYTES = 64 * 1024;

const object = z.record(z.string(), z.unknown());
/** Receipts one `receipts` message carries at most (each is about 600 bytes of JSON). */
export const MAX_RECEIPTS_PER_MESSAGE = 32;

/** The JSON messages agents exchange. */
export const wireMessageSchema = z.discriminatedUnion('t', [
  /** Asks a peer for its current key bundle. */
  z.strictObject({ t: z.literal('bundle.get') }),
  /** A key bundle (verified by the receiver against the CA before use). */
  z.strictObject({ t: z.literal('bundle'), bundle: object }),
  /** A signed receipt for an exchange (verified by the sender). */
  z.strictObject({ t: z.literal('receipt'), receipt: object }),
  /** Signed receipts for several exchanges (those of a batch envelope), each verified on its own. */
  z.strictObject({ t: z.literal('receipts'), receipts: z.array(object).min(1).max(MAX_RECEIPTS_PER_MESSAGE) }),
  /** Asks the recipient of an exchange for its receipt again (after a lost connection). */
  z.strictObject({ t: z.literal('receipt.get'), id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{7,63}$/) }),
  /** The recipient has no receipt for that exchange (it never completed there): the sender resends at once. */
  z.strictObject({ t: z.literal('receipt.none'), id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{7,63}$/) }),
  /** A request for a patient's records: a JWE (to the holder's X25519 key) of a JWS (by the requester's Ed25519 key). */
  z.strictObject({ t: z.literal('records.request'), id: z.uuid(), jwe: z.string().min(1).max(16_384) }),
  /** The holder's answer to a records request (no PHI: an id, a status, a code). */
  z.strictObject({
    t: z.literal('request.status'),
    id: z.uuid(),
    status: z.enum(['accepted', 'refused', 'answered']),
    code: z
      .string()
      .regex(/^ERR_[A-Z0-9_]{1,60}$/)
      .optional(),
    /** `answered`: the exchange that answers it (the requester's inbox item of that id names the request). */
    exchange: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9_-]{7,63}$/)
      .optional(),
  }),
  // E-prescription Task calls and replies (hospital-agent/prescriptions/wire.ts).
  ...rxWireSchemas,
]);

/** A JSON agent message. */
export type WireMessage = z.infer<typeof wireMessageSchema>;

/** Encodes a JSON agent message. */
export function encodeWire(message: WireMessage): Buffer {
  return Buffer.concat([Buffer.of(WIRE_JSON), Buffer.from(JSON.stringify(message), 'utf8')]);
}

/** Encodes a ledger replication message. */
export function encodeLedgerWire(message: string | Uint8Array): Buffer {
  const body = typeof message === 'string' ? Buffer.from(message, 'utf8') : Buffer.from(message);
  return Buffer.concat([Buffer.of(WIRE_LEDGER), body]);
}

/** A decoded wire message, or why it was dropped. */
export type DecodedWire = { kind: 'ledger'; message: string } | { kind: 'json'; message: WireMessage } | { kind: 'invalid'; problem: string };

/** Decodes a message body; never throws (peers may send garbage). */
export function decodeWire(body: Uint8Array): DecodedWire {
  if (body.length === 0) return { kind: 'invalid', problem: 'empty message' };
  const rest = Buffer.from(body.buffer, body.byteOffset + 1, body.length - 1);
  if (body[0] === WIRE_LEDGER) return { kind: 'ledger', message: rest.toString('utf8') };
  if (body[0] !== WIRE_JSON) return { kind: 'invalid', problem: 'unknown message prefix' };
  if (rest.length > MAX_WIRE_JSON_BYTES) return { kind: 'invalid', problem: 'message too large' };
  let value: unknown;
  try {
    value = JSON.parse(rest.toString('utf8'));
  } catch {
    return { kind: 'invalid', problem: 'not JSON' };
  }
  const parsed = wireMessageSchema.safeParse(value);
  if (!parsed.success) return { kind: 'invalid', problem: `bad message: ${parsed.error.issues[0]?.path.join('.') || 'shape'}` };
  return { kind: 'json', message: parsed.data };
}

/**
 * What an inbound transfer's OPEN meta tells the recipient (the relay sees
 * it: ids and a count only): the exchange id, or for a batch envelope the
 * batch id and how many exchanges it carries (`n`).
 */
export const transferMetaSchema = z.strictObject({
  v: z.literal(1),
  x: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{7,63}$/),
  n: z.number().int().min(1).max(MAX_BATCH_ITEMS).optional(),
});

/** Encodes the OPEN meta of an exchange transfer (`count`: a batch of that many exchanges). */
export function encodeTransferMeta(exchangeId: string, count?: number): Buffer {
  return Buffer.from(JSON.stringify(count === undefined ? { v: 1, x: exchangeId } : { v: 1, x: exchangeId, n: count }), 'utf8');
}

/** Decodes an OPEN meta; undefined when malformed. */
export function decodeTransferMeta(meta: Uint8Array): z.infer<typeof transferMetaSchema> | undefined {
  try {
    const r = transferMetaSchema.safeParse(JSON.parse(Buffer.from(meta).toString('utf8')));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}
