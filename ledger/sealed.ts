import { createCipheriv, createDecipheriv, hkdfSync, randomBytes, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { HOSPITAL_ID_PATTERN } from '../certs/index.ts';
import { sha256Hex } from './entry.ts';
import { LedgerError } from './errors.ts';
import { leafHash } from './merkle.ts';
import { HEX64_PATTERN, MAX_ENTRY_BYTES, type Entry } from './schema.ts';

/**
 * Private replication (docs/replication.md): an entry of a feed that does not
 * concern a peer travels to it, and is stored by it, as a sealed record: the
 * entry's bytes encrypted with AES-256-GCM under a key only the feed's author
 * can derive (HKDF-SHA256 over its Ed25519 signing key's private bytes), with
 * the entry hash and RFC 9162 leaf hash in the clear so the peer keeps the
 * hash chain and Merkle tree whole (checkpoints, consistency proofs,
 * cosigning) and can hand the author its feed back in recovery. Everything
 * else (type, time, ids, patients, parties) is inside the ciphertext.
 */

/** Replication modes: `private` (the default) sends each peer only what concerns it in the clear; `full` sends every feed in the clear to everyone. */
export const REPLICATION_MODES = ['private', 'full'] as const;
/** A replication mode. */
export type ReplicationMode = (typeof REPLICATION_MODES)[number];
/** The mode an agent runs in unless configured otherwise. */
export const DEFAULT_REPLICATION_MODE: ReplicationMode = 'private';

/** HKDF salt (domain separation of the sealing key from every other use of the signing key). */
const SEAL_SALT = Buffer.from('hie-ledger sealed entry v1');
/** Sealed plaintexts are padded to a multiple of this many bytes (every application entry but the largest consents fits one block). */
export const SEAL_PAD_BYTES = 1024;
/** Version of the sealed record format. */
export const SEALED_VERSION = 1;

/** A sealed record, as stored and sent (JCS bytes; its keys sort before any entry's, so `{"ct":` starts it). */
export interface SealedRecord {
  /** AES-256-GCM ciphertext of the entry bytes, base64url. */
  ct: string;
  feed: string;
  /** SHA-256 of the entry bytes (the hash chain's link), lowercase hex. */
  hash: string;
  /** 96-bit GCM nonce, base64url. */
  iv: string;
  /** Key id (JWK thumbprint) of the author's signing key the sealing key was derived from. */
  kid: string;
  /** RFC 9162 leaf hash of the entry bytes, lowercase hex. */
  leaf: string;
  sealed: typeof SEALED_VERSION;
  seq: number;
  /** GCM tag, base64url. */
  tag: string;
}

const b64url = (min: number, max: number) =>
  z
    .string()
    .regex(/^[A-Za-z0-9_-]*$/)
    .min(min)
    .max(max);
const sealedSchema = z.strictObject({
  ct: b64url(1, Math.ceil(((MAX_ENTRY_BYTES + SEAL_PAD_BYTES) * 4) / 3)),
  feed: z.string().regex(HOSPITAL_ID_PATTERN),
  hash: z.string().regex(HEX64_PATTERN),
  iv: b64url(16, 16),
  kid: b64url(43, 43),
  leaf: z.string().regex(HEX64_PATTERN),
  sealed: z.literal(SEALED_VERSION),
  seq: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  tag: b64url(22, 22),
});

const PREFIX = Buffer.from('{"ct":');

/** True when stored or received bytes are a sealed record rather than an entry. */
export function isSealed(bytes: Buffer): boolean {
  return bytes.length > PREFIX.length && bytes.subarray(0, PREFIX.length).equals(PREFIX);
}

/** Parses a sealed record; anything malformed or not in canonical (JCS) form throws ERR_LEDGER_INVALID_ENTRY. */
export function readSealed(bytes: Buffer): SealedRecord {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new LedgerError('ERR_LEDGER_INVALID_ENTRY', 'sealed record is not JSON');
  }
  const r = sealedSchema.safeParse(value);
  if (!r.success) throw new LedgerError('ERR_LEDGER_INVALID_ENTRY', `sealed record is malformed at ${r.error.issues[0]?.path.join('.') || '(root)'}`);
  if (!encodeSealed(r.data).equals(bytes)) throw new LedgerError('ERR_LEDGER_INVALID_ENTRY', 'sealed record is not in canonical form');
  return r.data;
}

/** The author's AES-256 sealing key of `feed`, derived from its Ed25519 signing key. */
export function sealingKey(signingKey: KeyObject, feed: string): Buffer {
  const der = signingKey.export({ format: 'der', type: 'pkcs8' });
  return Buffer.from(hkdfSync('sha256', der, SEAL_SALT, `hie-ledger seal ${feed}`, 32));
}

function aad(feed: string, seq: number, hash: string, leaf: string): Buffer {
  return Buffer.from(`${feed}\n${seq}\n${hash}\n${leaf}`);
}

/** Seals the entry bytes `bytes` (entry `feed:seq`) under `key` (from {@link sealingKey}); a fresh nonce every time. */
export function sealEntry(key: Buffer, kid: string, feed: string, seq: number, bytes: Buffer): Buffer {
  const hash = sha256Hex(bytes);
  const leaf = leafHash(bytes).toString('hex');
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(aad(feed, seq, hash, leaf));
  // Length-prefixed and zero-padded to a multiple of SEAL_PAD_BYTES: the ciphertext's size does not tell the entry's type.
  const padded = Buffer.alloc(Math.ceil((bytes.length + 4) / SEAL_PAD_BYTES) * SEAL_PAD_BYTES);
  padded.writeUInt32BE(bytes.length, 0);
  bytes.copy(padded, 4);
  const ct = Buffer.concat([c.update(padded), c.final()]);
  const record: SealedRecord = {
    ct: ct.toString('base64url'),
    feed,
    hash,
    iv: iv.toString('base64url'),
    kid,
    leaf,
    sealed: SEALED_VERSION,
    seq,
    tag: c.getAuthTag().toString('base64url'),
  };
  return encodeSealed(record);
}

/**
 * The JCS (RFC 8785) bytes of a record: its keys in sorted order, every value
 * an ASCII string or a safe integer, so JSON.stringify in that order is
 * exactly JCS (checked against `jcs` in the tests), without its cost per entry.
 */
export function encodeSealed(r: SealedRecord): Buffer {
  return Buffer.from(JSON.stringify({ ct: r.ct, feed: r.feed, hash: r.hash, iv: r.iv, kid: r.kid, leaf: r.leaf, sealed: r.sealed, seq: r.seq, tag: r.tag }));
}

/**
 * Opens a sealed record with the author's key: the entry bytes, checked
 * against the record's hash and leaf. A wrong key or altered record throws
 * ERR_LEDGER_INVALID_ENTRY.
 */
export function unsealEntry(key: Buffer, record: SealedRecord): Buffer {
  let bytes: Buffer;
  try {
    const d = createDecipheriv('aes-256-gcm', key, Buffer.from(record.iv, 'base64url'));
    d.setAAD(aad(record.feed, record.seq, record.hash, record.leaf));
    d.setAuthTag(Buffer.from(record.tag, 'base64url'));
    const padded = Buffer.concat([d.update(Buffer.from(record.ct, 'base64url')), d.final()]);
    const n = padded.readUInt32BE(0);
    if (n > padded.length - 4 || n > MAX_ENTRY_BYTES) throw new Error('bad length');
    bytes = padded.subarray(4, 4 + n);
  } catch {
    throw new LedgerError('ERR_LEDGER_INVALID_ENTRY', `sealed record ${record.feed}:${record.seq} does not open under our key`);
  }
  if (sha256Hex(bytes) !== record.hash || leafHash(bytes).toString('hex') !== record.leaf)
    throw new LedgerError('ERR_LEDGER_INVALID_ENTRY', `sealed record ${record.feed}:${record.seq} does not hold the entry its hashes name`);
  return bytes;
}

/**
 * Who an entry concerns besides its author: the hospitals that are a party
 * to it (docs/replication.md has the table). `grantees` resolves a consent
 * id of the author's feed to the hospitals it names (for consent.revoked).
 * Genesis and key.rotated entries concern everyone: they carry only public
 * key bundles, and every peer needs them to check the feed's signatures.
 */
export function concernedParties(entry: Entry, grantees: (consent: string) => readonly string[] = () => []): ReadonlySet<string> | 'everyone' {
  const b = entry.body as Record<string, unknown>;
  switch (entry.type) {
    case 'genesis':
    case 'key.rotated':
      return 'everyone';
    case 'exchange.sent':
      return new Set([b.to as string]);
    case 'exchange.received':
    case 'receipt':
      return new Set([b.from as string]);
    case 'exchange.failed':
    case 'exchange.cancelled':
      return new Set([b.peer as string]);
    case 'consent.granted':
      return new Set(b.grantees as string[]);
    case 'consent.revoked':
      return new Set(grantees(b.consent as string));
    case 'payment.charged':
    case 'payment.settled':
      return new Set([b.payer as string, b.payee as string]);
    case 'prescription.accepted':
    case 'prescription.rejected':
    case 'prescription.completed':
      return new Set([b.pharmacy as string]);
    case 'claim.submitted':
      return new Set([b.insurer as string]);
    case 'claim.received':
      return new Set([b.hospital as string]);
    case 'claim.responded':
      return new Set([b.hospital as string, b.insurer as string]);
    case 'eligibility.requested':
      return new Set([b.insurer as string]);
    case 'eligibility.received':
      return new Set([b.hospital as string]);
    case 'eligibility.responded':
      return new Set([b.hospital as string, b.insurer as string]);
    case 'prescription.issued':
    case 'prescription.cancelled':
    case 'certificate.issued':
    case 'patient.enrolled':
    case 'patient.records':
      // The author's own business: a prescription no pharmacy holds yet, a card the hospital issued (its proof goes with the card).
      return new Set();
  }
}

/** True when `entry` concerns `peer` (see {@link concernedParties}). */
export function concerns(entry: Entry, peer: string, grantees?: (consent: string) => readonly string[]): boolean {
  const p = concernedParties(entry, grantees);
  return p === 'everyone' || p.has(peer);
}
