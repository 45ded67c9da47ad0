import { createPublicKey, hash, sign as edSign, verify as edVerify, type KeyObject } from 'node:crypto';
import { fingerprint256 } from '../certs/index.ts';
import { LedgerError } from './errors.ts';
import { HASH_BYTES, MAX_LOG_SIZE } from './merkle.ts';

/**
 * C2SP signed notes (https://c2sp.org/signed-note) with Ed25519 signatures,
 * and the C2SP tlog-checkpoint body (https://c2sp.org/tlog-checkpoint) they
 * carry for a feed's Merkle tree.
 */

/** Most signature lines a note may carry (golang.org/x/mod/sumdb/note reads at most 100). */
export const MAX_NOTE_SIGNATURES = 100;
/** Largest note accepted, in bytes. */
export const MAX_NOTE_BYTES = 16_384;
/** Signature type byte of Ed25519 in a signed note key id. */
const ALG_ED25519 = 0x01;
const EM_DASH = '\u2014';
// SPKI DER prefix of an Ed25519 public key: the raw 32 bytes follow.
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/** A key that signs notes: its name and its Ed25519 private key. */
export interface NoteSigner {
  name: string;
  key: KeyObject;
}

/** A key that verifies notes: name, 4-byte key id and Ed25519 public key. */
export interface NoteVerifier {
  name: string;
  keyId: Buffer;
  key: KeyObject;
}

/** Raw public keys by key object (a KeyObject never changes): every checkpoint signed names its key id, which derived the public key and exported it each time. */
const rawKeys = new WeakMap<KeyObject, Buffer>();

/** The raw 32 bytes of an Ed25519 public (or private) key (a fresh copy: callers may change it). */
export function rawEd25519(key: KeyObject): Buffer {
  const known = rawKeys.get(key);
  if (known) return Buffer.from(known);
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  const der = pub.export({ type: 'spki', format: 'der' });
  if (pub.asymmetricKeyType !== 'ed25519' || der.length !== 44) throw new TypeError('expected an Ed25519 key');
  const raw = Buffer.from(der.subarray(12));
  rawKeys.set(key, raw);
  return Buffer.from(raw);
}

/** An Ed25519 public key from its raw 32 bytes. */
export function ed25519FromRaw(raw: Uint8Array): KeyObject {
  if (raw.length !== 32) throw new TypeError('an Ed25519 public key is 32 bytes');
  return createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
}

/** A key name is non-empty, has no whitespace and no '+' (signed-note spec). */
export function isKeyName(name: unknown): name is string {
  return typeof name === 'string' && name.length > 0 && name.length <= 256 && !/[\s+]/u.test(name) && !/\p{Cc}/u.test(name);
}

/** The key id: the first 4 bytes of SHA-256(key name || 0x0A || 0x01 || public key). */
export function noteKeyId(name: string, key: KeyObject): Buffer {
  if (!isKeyName(name)) throw new TypeError(`invalid note key name ${JSON.stringify(name)}`);
  return hash('sha256', Buffer.concat([Buffer.from(`${name}\n`, 'utf8'), Buffer.of(ALG_ED25519), rawEd25519(key)]), 'buffer').subarray(0, 4);
}

/** The verifier key string `<name>+<hex key id>+<base64(0x01 || key)>` (as golang.org/x/mod/sumdb/note writes it). */
export function verifierKeyString(name: string, key: KeyObject): string {
  return `${name}+${noteKeyId(name, key).toString('hex')}+${Buffer.concat([Buffer.of(ALG_ED25519), rawEd25519(key)]).toString('base64')}`;
}

/** Parses a verifier key string into a {@link NoteVerifier}. */
export function parseVerifierKey(vkey: string): NoteVerifier {
  const m = /^([^+\s]+)\+([0-9a-f]{8})\+([A-Za-z0-9+/]+={0,2})$/.exec(vkey);
  const raw = m ? Buffer.from(m[3] as string, 'base64') : Buffer.alloc(0);
  if (!m || raw.length !== 33 || raw[0] !== ALG_ED25519) throw new TypeError('malformed Ed25519 verifier key');
  const key = ed25519FromRaw(raw.subarray(1));
  const keyId = noteKeyId(m[1] as string, key);
  if (keyId.toString('hex') !== m[2]) throw new TypeError('verifier key id does not match its name and key');
  return { name: m[1] as string, keyId, key };
}

function checkText(text: string): void {
  if (text.length === 0 || !text.endsWith('\n')) throw new LedgerError('ERR_LEDGER_NOTE_INVALID', 'note text must end with a newline');
  if (text.includes('\n\n') || text.startsWith('\n')) throw new LedgerError('ERR_LEDGER_NOTE_INVALID', 'note text must not contain a blank line');
  // Only newline among the control characters (the spec forbids the rest); no lone surrogates.
  if (/[\p{Cc}]/u.test(text.replace(/\n/g, '')) || Buffer.from(text, 'utf8').toString('utf8') !== text)
    throw new LedgerError('ERR_LEDGER_NOTE_INVALID', 'note text must be UTF-8 without control characters');
}

/** Signs `text` (ending with a newline, no blank line) with every signer: text, a blank line, one signature line each. */
export function signNote(text: string, signers: readonly NoteSigner[]): string {
  checkText(text);
  const msg = Buffer.from(text, 'utf8');
  const lines = signers.map((s) => {
    const sig = edSign(null, msg, s.key);
    return `${EM_DASH} ${s.name} ${Buffer.concat([noteKeyId(s.name, s.key), sig]).toString('base64')}\n`;
  });
  return `${text}\n${lines.join('')}`;
}

/** An opened note: its text and the known keys whose signatures verified. */
export interface OpenedNote {
  text: string;
  verified: Array<{ name: string; keyId: string }>;
  /** Signature lines by keys not given (ignored, counted). */
  unknown: number;
}

/**
 * Opens a signed note strictly: at most {@link MAX_NOTE_BYTES} and
 * {@link MAX_NOTE_SIGNATURES} signature lines, every line well formed,
 * signatures matched to verifiers by key name and id together; a signature
 * by a given key that does not verify is an error, a signature by a key not
 * given is ignored. Throws ERR_LEDGER_NOTE_INVALID (malformed),
 * ERR_LEDGER_BAD_SIGNATURE, or ERR_LEDGER_UNKNOWN_KEY when no given key signed.
 */
export function openNote(note: unknown, verifiers: readonly NoteVerifier[]): OpenedNote {
  if (typeof note !== 'string') throw new LedgerError('ERR_LEDGER_NOTE_INVALID', 'a note is text');
  if (Buffer.byteLength(note, 'utf8') > MAX_NOTE_BYTES) throw new LedgerError('ERR_LEDGER_NOTE_INVALID', `note exceeds ${MAX_NOTE_BYTES} bytes`);
  const split = note.lastIndexOf('\n\n');
  if (split < 0 || !note.endsWith('\n')) throw new LedgerError('ERR_LEDGER_NOTE_INVALID', 'note has no signature block');
  const text = note.slice(0, split + 1);
  checkText(text);
  const lines = note.slice(split + 2, -1).split('\n');
  if (lines.length > MAX_NOTE_SIGNATURES) throw new LedgerError('ERR_LEDGER_NOTE_INVALID', `note has more than ${MAX_NOTE_SIGNATURES} signatures`);
  const msg = Buffer.from(text, 'utf8');
  const verified: OpenedNote['verified'] = [];
  const seen = new Set<string>();
  let unknown = 0;
  for (const line of lines) {
    const m = /^\u2014 ([^\s+]+) ([A-Za-z0-9+/]+={0,2})$/u.exec(line);
    const blob = m ? Buffer.from(m[2] as string, 'base64') : Buffer.alloc(0);
    if (!m || blob.length < 5 || blob.toString('base64') !== m[2]) throw new LedgerError('ERR_LEDGER_NOTE_INVALID', 'malformed note signature line');
    const name = m[1] as string;
    const id = blob.subarray(0, 4);
    const matches = verifiers.filter((v) => v.name === name && v.keyId.equals(id));
    if (matches.length === 0) {
      unknown += 1;
      continue;
    }
    const tag = `${name}+${id.toString('hex')}`;
    if (seen.has(tag)) throw new LedgerError('ERR_LEDGER_NOTE_INVALID', `note is signed twice by ${tag}`);
    seen.add(tag);
    const sig = blob.subarray(4);
    if (sig.length !== 64 || !matches.some((v) => edVerify(null, msg, v.key, sig)))
      throw new LedgerError('ERR_LEDGER_BAD_SIGNATURE', `note signature by ${name} (key ${id.toString('hex')}) does not verify`);
    verified.push({ name, keyId: id.toString('hex') });
  }
  if (verified.length === 0) throw new LedgerError('ERR_LEDGER_UNKNOWN_KEY', 'note carries no signature by a known key');
  return { text, verified, unknown };
}

// ---- checkpoints ------------------------------------------------------------

/** A tlog checkpoint body: origin, tree size and root hash. */
export interface Checkpoint {
  origin: string;
  size: number;
  root: Buffer;
}

/**
 * The origin (and note key name) of a feed's checkpoints:
 * `hie.federation/<first 8 bytes of the CA certificate's SHA-256, hex>/<feed>`,
 * so a checkpoint names its hospital and cannot pass for one of another federation.
 */
export function checkpointOrigin(caPem: string, feed: string): string {
  const fp = fingerprint256(caPem).replace(/:/g, '').toLowerCase().slice(0, 16);
  return `hie.federation/${fp}/${feed}`;
}

/** The checkpoint body text: three lines, no extension lines. */
export function formatCheckpoint(cp: Checkpoint): string {
  if (!isKeyName(cp.origin)) throw new TypeError('checkpoint origin must be a note key name');
  if (!Number.isSafeInteger(cp.size) || cp.size < 0 || cp.size > MAX_LOG_SIZE) throw new TypeError('checkpoint size out of range');
  if (cp.root.length !== HASH_BYTES) throw new TypeError('checkpoint root must be 32 bytes');
  return `${cp.origin}\n${cp.size}\n${cp.root.toString('base64')}\n`;
}

/** Parses a checkpoint body strictly (exactly origin, decimal size, base64 32-byte root). */
export function parseCheckpoint(text: string): Checkpoint {
  const m = /^([^\n]+)\n(0|[1-9][0-9]{0,15})\n([A-Za-z0-9+/]{43}=)\n$/.exec(text);
  if (!m) throw new LedgerError('ERR_LEDGER_NOTE_INVALID', 'checkpoint is not origin, size and root hash lines');
  const size = Number(m[2]);
  const root = Buffer.from(m[3] as string, 'base64');
  if (size > MAX_LOG_SIZE || root.length !== HASH_BYTES || root.toString('base64') !== m[3])
    throw new LedgerError('ERR_LEDGER_NOTE_INVALID', 'checkpoint size or root hash out of range');
  return { origin: m[1] as string, size, root };
}

/** Signs a checkpoint of `origin` with the feed key (key name = origin). */
export function signCheckpointNote(cp: Checkpoint, key: KeyObject): string {
  return signNote(formatCheckpoint(cp), [{ name: cp.origin, key }]);
}

/**
 * Opens a signed checkpoint: the note must verify under one of `keys`
 * (named by `origin`), and its body must name `origin`.
 */
export function openCheckpoint(note: unknown, origin: string, keys: readonly KeyObject[]): Checkpoint & { keyId: string } {
  const verifiers = keys.map((key) => ({ name: origin, keyId: noteKeyId(origin, key), key }));
  const opened = openNote(note, verifiers);
  const cp = parseCheckpoint(opened.text);
  if (cp.origin !== origin) throw new LedgerError('ERR_LEDGER_NOTE_INVALID', `checkpoint origin is ${JSON.stringify(cp.origin)}, expected ${origin}`);
  return { ...cp, keyId: (opened.verified[0] as { keyId: string }).keyId };
}
