/** Error codes of the agent's envelope, receipt, replay and key-ring code. */
export type CryptoErrorCode =
  /** The envelope stream ended before its final chunk, trailer or end marker. */
  | 'ERR_ENVELOPE_TRUNCATED'
  /** A header, chunk, tag or trailer failed authentication or does not match what was signed. */
  | 'ERR_ENVELOPE_TAMPERED'
  /** A chunk arrived at the wrong position. */
  | 'ERR_ENVELOPE_REORDERED'
  /** The envelope is not addressed to this agent, or not to any of its current keys. */
  | 'ERR_ENVELOPE_WRONG_RECIPIENT'
  /** The sender's header or trailer signature does not verify. */
  | 'ERR_ENVELOPE_BAD_SIGNATURE'
  /** This exchange id from this sender was already opened. */
  | 'ERR_ENVELOPE_REPLAYED'
  /** The envelope was created too long ago (outside the replay window) or too far in the future. */
  | 'ERR_ENVELOPE_STALE'
  /** The bytes do not follow the envelope layout (magic, version, lengths, JSON schema). */
  | 'ERR_ENVELOPE_MALFORMED'
  /** No verified key bundle (CA-signed, unrevoked, in validity) is known for the sender's key id. */
  | 'ERR_ENVELOPE_UNTRUSTED_SENDER'
  /** The quarantine sink failed (disk full, path exists, writable errored). */
  | 'ERR_ENVELOPE_SINK'
  /** The envelope holds more plaintext than its quarantine takes (a batch is opened in memory, up to a limit). */
  | 'ERR_ENVELOPE_TOO_LARGE'
  /** A receipt does not follow the receipt schema. */
  | 'ERR_RECEIPT_MALFORMED'
  /** A receipt's signature does not verify against the recipient's key. */
  | 'ERR_RECEIPT_BAD_SIGNATURE'
  /** No verified key bundle is known for the receipt's signer and key id. */
  | 'ERR_RECEIPT_UNTRUSTED'
  /** A valid receipt that is about another exchange, envelope, content or party than expected. */
  | 'ERR_RECEIPT_MISMATCH'
  /** The replay store on disk is unreadable or corrupt. */
  | 'ERR_REPLAY_STORE'
  /** The key ring refused a bundle or has no usable bundle for an agent. */
  | 'ERR_KEYRING_NO_KEY'
  /** Every bundle known for an agent has a revoked certificate. */
  | 'ERR_KEYRING_REVOKED'
  /** No valid key bundle can be had for a peer (not in the ledger yet, and the peer did not answer). */
  | 'ERR_PEER_KEY_UNAVAILABLE'
  /** The agent's private key files are missing, unreadable, of the wrong type, or readable by others. */
  | 'ERR_KEYS_UNREADABLE'
  /** A compact JWE is malformed, uses other algorithms than ours, or does not open with the key given. */
  | 'ERR_JWE_INVALID'
  /** A signed, encrypted message (a records request) does not open, or its signature does not verify. */
  | 'ERR_SEALED_MESSAGE_INVALID';

/** Safe, non-PHI context about the envelope an error is about (for failure receipts and logs). */
export interface EnvelopeContext {
  exchangeId?: string | undefined;
  from?: string | undefined;
  headerHash?: string | undefined;
}

/** Base class of every error of `hospital-agent/crypto`; `code` is stable and documented. */
export class CryptoError extends Error {
  readonly code: CryptoErrorCode;
  /** What is known about the envelope when the error was raised (never payload bytes). */
  readonly context: EnvelopeContext;

  constructor(code: CryptoErrorCode, message: string, options?: { cause?: unknown; context?: EnvelopeContext }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.context = options?.context ?? {};
    this.name = this.constructor.name;
  }
}

/** True when `err` is a {@link CryptoError}, optionally with the given code. */
export function isCryptoError(err: unknown, code?: CryptoErrorCode): err is CryptoError {
  return err instanceof CryptoError && (code === undefined || err.code === code);
}
