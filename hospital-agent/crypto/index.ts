/**
 * The agent's cryptographic core (no network code): end-to-end envelopes
 * (seal/open), signed receipts, replay protection, the key ring of verified
 * peer bundles, and the agent's own key files.
 */
export { CryptoError, isCryptoError, type CryptoErrorCode, type EnvelopeContext } from './errors.ts';
export {
  ENVELOPE_MAGIC,
  ENVELOPE_VERSION,
  ENVELOPE_SUITE,
  DEFAULT_CHUNK_SIZE,
  MIN_CHUNK_SIZE,
  MAX_CHUNK_SIZE,
  MAX_HEADER_BYTES,
  MAX_TRAILER_BYTES,
  MAX_RECIPIENTS,
  EXCHANGE_ID_PATTERN,
  MAX_BATCH_ITEMS,
  BATCH_CONTENT_TYPE,
  FrameKind,
  type BatchItem,
  type EnvelopeHeader,
  type EnvelopeMeta,
  type EnvelopeTrailer,
} from './format.ts';
export { SealStream, sealEnvelope, type BatchItemInput, type SealOptions, type SealSummary, type SenderKeys } from './seal.ts';
export { openEnvelope, type OpenOptions, type OpenedEnvelope, type OpenedItem, type RecipientKeys, type DecryptionKey, type SenderLookup } from './open.ts';
export type { QuarantineTarget } from './sink.ts';
export { MemoryReplayStore, FileReplayStore, replayKey, DEFAULT_REPLAY_WINDOW_MS, DEFAULT_MAX_CLOCK_SKEW_MS, type ReplayStore } from './replay.ts';
export {
  createReceipt,
  createReceipts,
  receiptSignature,
  MAX_RECEIPT_BATCH,
  deliveredReceipt,
  verifyReceipt,
  RECEIPT_VERSION,
  type Receipt,
  type ReceiptInput,
  type ReceiptDisposition,
  type ReceiptExpectation,
  type VerifiedReceipt,
} from './receipt.ts';
export { KeyRing, type KeyRingTrust } from './keyring.ts';
export { saveAgentKeys, loadAgentKeys, withKids, senderKeys, recipientKeys, KEY_FILES, type LocalKeys } from './keystore.ts';
export { sealSignedMessage, openSignedMessage, MAX_SEALED_MESSAGE_CHARS, type KeyWithId } from './sealed-message.ts';
export { signCompactEdDsa, type EdDsaHeader } from './jws.ts';
export { sealJwe, openJwe, JweError, MAX_JWE_CHARS, type OpenJweOptions, type OpenedJwe } from './jwe.ts';
