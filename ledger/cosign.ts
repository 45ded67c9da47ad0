import { hash, sign as edSign, verify as edVerify, type KeyObject } from 'node:crypto';
import { fingerprint256 } from '../certs/index.ts';
import { LedgerError } from './errors.ts';
import { ed25519FromRaw, isKeyName, MAX_NOTE_BYTES, MAX_NOTE_SIGNATURES, rawEd25519 } from './note.ts';

/**
 * C2SP tlog-cosignature (https://c2sp.org/tlog-cosignature) Ed25519
 * `cosignature/v1`: a witness's timestamped note signature on a checkpoint.
 * The signed message is `cosignature/v1\ntime <t>\n` followed by the whole
 * checkpoint body; the signature line carries
 * base64(key id (4) || timestamp (u64, big-endian) || Ed25519 signature (64)).
 */

/** Signature type byte of an Ed25519 cosignature/v1 key (its key id and vkey). */
export const ALG_COSIGNATURE_V1 = 0x04;
/** The header line of the cosignature/v1 signed message. */
export const COSIGNATURE_V1_HEADER = 'cosignature/v1';
/** Bytes of a cosignature/v1 signature blob: key id, timestamp, Ed25519 signature. */
export const COSIGNATURE_V1_BYTES = 4 + 8 + 64;
const MAX_TIMESTAMP = 2n ** 63n - 1n;
const EM_DASH = '\u2014';

/** A witness key: its cosigner name, 4-byte key id and Ed25519 public key. */
export interface CosignerKey {
  name: string;
  keyId: Buffer;
  key: KeyObject;
}

/**
 * The cosigner (witness) name of agent `id` in the federation of `caPem`:
 * `hie.federation/<first 8 bytes of the CA certificate's SHA-256, hex>/witness/<id>`.
 */
export function witnessName(caPem: string, id: string): string {
  const fp = fingerprint256(caPem).replace(/:/g, '').toLowerCase().slice(0, 16);
  return `hie.federation/${fp}/witness/${id}`;
}

/** The agent id a federation witness name names, or undefined when `name` is not one of `caPem`'s witness names. */
export function witnessIdOf(caPem: string, name: string): string | undefined {
  const prefix = witnessName(caPem, '');
  return name.startsWith(prefix) && name.length > prefix.length ? name.slice(prefix.length) : undefined;
}

/** The cosignature/v1 key id: SHA-256(name || 0x0A || 0x04 || public key)[:4]. */
export function cosignerKeyId(name: string, key: KeyObject): Buffer {
  if (!isKeyName(name)) throw new TypeError(`invalid cosigner name ${JSON.stringify(name)}`);
  return hash('sha256', Buffer.concat([Buffer.from(`${name}\n`, 'utf8'), Buffer.of(ALG_COSIGNATURE_V1), rawEd25519(key)]), 'buffer').subarray(0, 4);
}

/** A {@link CosignerKey} for `name` and an Ed25519 key (public or private). */
export function cosignerKey(name: string, key: KeyObject): CosignerKey {
  const pub = key.type === 'private' ? ed25519FromRaw(rawEd25519(key)) : key;
  return { name, keyId: cosignerKeyId(name, key), key: pub };
}

/** The witness's vkey `<name>+<hex key id>+<base64(0x04 || key)>` (C2SP signed-note verifier key, type 0x04). */
export function cosignerVerifierKey(name: string, key: KeyObject): string {
  return `${name}+${cosignerKeyId(name, key).toString('hex')}+${Buffer.concat([Buffer.of(ALG_COSIGNATURE_V1), rawEd25519(key)]).toString('base64')}`;
}

/** Parses a type-0x04 vkey; throws TypeError when malformed or when its key id does not match. */
export function parseCosignerKey(vkey: string): CosignerKey {
  const m = /^([^+\s]+)\+([0-9a-f]{8})\+([A-Za-z0-9+/]+={0,2})$/.exec(vkey);
  const raw = m ? Buffer.from(m[3] as string, 'base64') : Buffer.alloc(0);
  if (!m || raw.length !== 33 || raw[0] !== ALG_COSIGNATURE_V1) throw new TypeError('malformed cosignature/v1 verifier key');
  const key = ed25519FromRaw(raw.subarray(1));
  const keyId = cosignerKeyId(m[1] as string, key);
  if (keyId.toString('hex') !== m[2]) throw new TypeError('verifier key id does not match its name and key');
  return { name: m[1] as string, keyId, key };
}

/** The exact bytes a cosignature/v1 signs: header line, time line, checkpoint body. */
export function cosignedMessage(checkpointText: string, time: number): Buffer {
  if (!Number.isSafeInteger(time) || time < 0) throw new TypeError('cosignature time must be a non-negative whole number of seconds');
  return Buffer.from(`${COSIGNATURE_V1_HEADER}\ntime ${time}\n${checkpointText}`, 'utf8');
}

/** Signs `checkpointText` (the note body, ending with a newline) as witness `name` at `time` (POSIX seconds): one signature line. */
export function cosign(checkpointText: string, name: string, key: KeyObject, time: number): string {
  if (key.type !== 'private' || key.asymmetricKeyType !== 'ed25519') throw new TypeError('a cosigner key is an Ed25519 private key');
  const ts = Buffer.alloc(8);
  ts.writeBigUInt64BE(BigInt(time));
  const sig = edSign(null, cosignedMessage(checkpointText, time), key);
  return `${EM_DASH} ${name} ${Buffer.concat([cosignerKeyId(name, key), ts, sig]).toString('base64')}\n`;
}

/** A signature line of a note, split but not verified. */
export interface SignatureLine {
  line: string;
  name: string;
  keyId: Buffer;
  blob: Buffer;
}

/** A note split into its text and signature lines (at most `maxLines`); throws ERR_LEDGER_NOTE_INVALID when malformed. */
export function splitNote(note: unknown, maxLines = MAX_NOTE_SIGNATURES): { text: string; sigs: SignatureLine[] } {
  if (typeof note !== 'string') throw new LedgerError('ERR_LEDGER_NOTE_INVALID', 'a note is text');
  if (Buffer.byteLength(note, 'utf8') > MAX_NOTE_BYTES) throw new LedgerError('ERR_LEDGER_NOTE_INVALID', `note exceeds ${MAX_NOTE_BYTES} bytes`);
  const split = note.lastIndexOf('\n\n');
  if (split < 0 || !note.endsWith('\n')) throw new LedgerError('ERR_LEDGER_NOTE_INVALID', 'note has no signature block');
  const lines = note.slice(split + 2, -1).split('\n');
  if (lines.length > maxLines) throw new LedgerError('ERR_LEDGER_NOTE_INVALID', `note has more than ${maxLines} signatures`);
  const sigs = lines.map((line) => {
    const m = /^\u2014 ([^\s+]+) ([A-Za-z0-9+/]+={0,2})$/u.exec(line);
    const blob = m ? Buffer.from(m[2] as string, 'base64') : Buffer.alloc(0);
    if (!m || blob.length < 5 || blob.toString('base64') !== m[2]) throw new LedgerError('ERR_LEDGER_NOTE_INVALID', 'malformed note signature line');
    return { line: `${line}\n`, name: m[1] as string, keyId: blob.subarray(0, 4), blob };
  });
  return { text: note.slice(0, split + 1), sigs };
}

/**
 * Checks one signature line as a cosignature/v1 by `key` over
 * `checkpointText`: name and key id must both match (else `undefined`: not
 * this key's line), then the blob must be 76 bytes with a timestamp below
 * 2^63 and a valid signature; returns the timestamp, or throws
 * ERR_LEDGER_BAD_SIGNATURE.
 */
export function verifyCosignature(checkpointText: string, sig: SignatureLine, key: CosignerKey): number | undefined {
  if (sig.name !== key.name || !sig.keyId.equals(key.keyId)) return undefined;
  const bad = (why: string) => new LedgerError('ERR_LEDGER_BAD_SIGNATURE', `cosignature by ${key.name} (key ${key.keyId.toString('hex')}) ${why}`);
  if (sig.blob.length !== COSIGNATURE_V1_BYTES) throw bad(`is ${sig.blob.length} bytes, not ${COSIGNATURE_V1_BYTES}`);
  const ts = sig.blob.readBigUInt64BE(4);
  if (ts > MAX_TIMESTAMP || ts > BigInt(Number.MAX_SAFE_INTEGER)) throw bad('has a timestamp out of range');
  const time = Number(ts);
  if (!edVerify(null, cosignedMessage(checkpointText, time), key.key, sig.blob.subarray(12))) throw bad('does not verify');
  return time;
}

/**
 * Adds signature lines to a note, keeping its own first and skipping a line
 * whose name and key id are already there (a witness's newer cosignature of
 * the same checkpoint replaces nothing: the first one stays).
 */
export function addSignatures(note: string, lines: readonly string[], maxLines = MAX_NOTE_SIGNATURES): string {
  const { text, sigs } = splitNote(note, maxLines);
  const have = new Set(sigs.map((s) => `${s.name}+${s.keyId.toString('hex')}`));
  const out = sigs.map((s) => s.line);
  for (const l of lines) {
    const [s] = splitNote(`${text}\n${l}`, 1).sigs;
    if (!s) continue;
    const tag = `${s.name}+${s.keyId.toString('hex')}`;
    if (have.has(tag) || out.length >= maxLines) continue;
    have.add(tag);
    out.push(s.line);
  }
  return `${text}\n${out.join('')}`;
}
