import { hash } from 'node:crypto';
import { jcs } from '../certs/index.ts';
import { LedgerError } from './errors.ts';
import { checkEntry, MAX_ENTRY_BYTES, type Entry } from './schema.ts';

/** An entry together with the exact bytes that were hashed and stored, and its hash. */
export interface StoredEntry {
  entry: Entry;
  bytes: Buffer;
  /** SHA-256 of `bytes`, lowercase hex. */
  hash: string;
}

/** SHA-256 of bytes as lowercase hex. */
export function sha256Hex(bytes: Uint8Array): string {
  return hash('sha256', bytes, 'hex');
}

/** Encodes an entry as its JCS (RFC 8785) bytes and hashes them. */
export function encodeEntry(entry: Entry): StoredEntry {
  const bytes = jcs(entry);
  if (bytes.length > MAX_ENTRY_BYTES) throw new LedgerError('ERR_LEDGER_ENTRY_TOO_LARGE', `entry of ${bytes.length} bytes exceeds ${MAX_ENTRY_BYTES}`);
  return { entry, bytes, hash: sha256Hex(bytes) };
}

/**
 * Decodes stored or received bytes into a validated entry. The hash is taken
 * over the bytes as they are: nothing is re-serialized.
 */
export function decodeEntry(bytes: Buffer): StoredEntry {
  if (bytes.length > MAX_ENTRY_BYTES) throw new LedgerError('ERR_LEDGER_ENTRY_TOO_LARGE', `entry of ${bytes.length} bytes exceeds ${MAX_ENTRY_BYTES}`);
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new LedgerError('ERR_LEDGER_INVALID_ENTRY', 'entry bytes are not JSON');
  }
  const checked = checkEntry(value);
  if (!checked.ok) throw new LedgerError('ERR_LEDGER_INVALID_ENTRY', `entry is malformed at ${checked.problem}`);
  return { entry: checked.entry, bytes, hash: sha256Hex(bytes) };
}
