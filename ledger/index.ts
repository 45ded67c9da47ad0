/**
 * The ledger: one hash-chained feed per hospital in LevelDB, each also an
 * RFC 9162 Merkle tree with C2SP checkpoints, signed heads and checkpoints,
 * proofs for auditors, replication over any message transport, equivocation evidence,
 * offline verification, reports and exports.
 */
export { LedgerError, type LedgerErrorCode } from './errors.ts';
export {
  BODY_SCHEMAS,
  ENTRY_TYPES,
  ENTRY_VERSION,
  GENESIS_PREV,
  MAX_ENTRY_BYTES,
  PURPOSES,
  FAILURE_REASONS,
  REVOCATION_REASONS,
  CHARGE_KINDS,
  CLAIM_OUTCOMES,
  ID_PATTERN,
  HEX64_PATTERN,
  DIGEST_PATTERN,
  hexDigest,
  TS_PATTERN,
  CURRENCY_PATTERN,
  CONTENT_TYPE_PATTERN,
  SCOPE_PATTERN,
  CODING_PATTERN,
  checkEntry,
  checkBody,
  type Entry,
  type EntryType,
  type AppendableType,
  type AppendInput,
  type BodyOf,
  type EntryCheck,
} from './schema.ts';
export { encodeEntry, decodeEntry, sha256Hex, type StoredEntry } from './entry.ts';
export { writeBatch, type SublevelOp } from './batch.ts';
export { signedHeadSchema, checkpointSchema, verifyHeadSignature, verifyCheckpointSignature, type SignedHead, type SignedCheckpoint } from './heads.ts';
export { KeyHistory, keyEraFromEntry, type KeyEra, type Trust } from './keys.ts';
export { evidenceSchema, type Evidence } from './evidence.ts';
export {
  Ledger,
  DEFAULT_MAX_APPEND_BATCH,
  DEFAULT_CHECKPOINTS_KEPT,
  type LedgerOptions,
  type AuthorOptions,
  type Head,
  type AppendResult,
  type HeadCheck,
  type CheckpointOutcome,
  type FeedStatus,
  type LedgerStatus,
  type EntryProof,
} from './ledger.ts';
export {
  levelSource,
  withSnapshotSource,
  bundleSource,
  exportBundle,
  parseBundle,
  bundleFileSchema,
  BUNDLE_FORMAT,
  BUNDLE_VERSION,
  type LedgerSource,
  type BundleFile,
} from './source.ts';
export {
  verifyLedger,
  VERIFY_RULES,
  DEFAULT_GRACE_SECONDS,
  DEFAULT_MAX_FINDINGS,
  type VerifyRule,
  type Finding,
  type VerifyResult,
  type VerifyOptions,
} from './verify.ts';
export { encodeMessage, decodeMessage, DEFAULT_MAX_MESSAGE_BYTES, MAX_RANGE_ENTRIES, MAX_HEADS_PER_MESSAGE, type ReplicationMessage } from './codec.ts';
export { MemoryNetwork, type ReplicationTransport } from './transport.ts';
export {
  Replicator,
  DEFAULT_GOSSIP_INTERVAL_MS,
  DEFAULT_CHECKPOINT_INTERVAL_MS,
  DEFAULT_RANGE_ENTRIES,
  DEFAULT_REQUEST_TIMEOUT_MS,
  DEFAULT_DROP_MS,
  DEFAULT_MAX_INBOX,
  type ReplicatorOptions,
  type ReplicatorStatus,
  type DroppedPeer,
} from './replication.ts';
export {
  concernedParties,
  concerns,
  isSealed,
  readSealed,
  sealEntry,
  sealingKey,
  unsealEntry,
  DEFAULT_REPLICATION_MODE,
  REPLICATION_MODES,
  SEALED_VERSION,
  SEAL_PAD_BYTES,
  type ReplicationMode,
  type SealedRecord,
} from './sealed.ts';
export {
  FeedRecovery,
  DEFAULT_RECOVERY_TIMEOUT_MS,
  DEFAULT_RECOVERY_MIN_PEERS,
  type RecoveryOptions,
  type RecoveryOutcome,
  type RecoveryState,
  type RefusedPeer,
} from './recovery.ts';
export { buildReport, renderReport, type LedgerReport, type HospitalReport } from './report.ts';
export { currencyDecimals, formatAmount } from './money.ts';
export {
  toAuditEvent,
  consentDecisionAuditEvent,
  LEDGER_TYPE_SYSTEM,
  BALP_AUTHZ_CONSENT_PROFILE,
  BALP_AUTHZ_SUBTYPE_SYSTEM,
  type AuditEvent,
  type ConsentDecisionInput,
} from './auditevent.ts';
export {
  leafHash,
  nodeHash,
  merkleRoot,
  rootFromInclusionProof,
  verifyInclusion,
  verifyConsistency,
  EMPTY_ROOT,
  MAX_LOG_SIZE,
  MAX_INCLUSION_PROOF,
  MAX_CONSISTENCY_PROOF,
} from './merkle.ts';
export {
  signNote,
  openNote,
  noteKeyId,
  verifierKeyString,
  parseVerifierKey,
  checkpointOrigin,
  formatCheckpoint,
  parseCheckpoint,
  signCheckpointNote,
  openCheckpoint,
  MAX_NOTE_SIGNATURES,
  MAX_NOTE_BYTES,
  type NoteSigner,
  type NoteVerifier,
  type OpenedNote,
  type Checkpoint,
} from './note.ts';
export {
  buildProof,
  parseProofFile,
  verifyProof,
  PROOF_FORMAT,
  PROOF_VERSION,
  MAX_PROOF_ENTRIES,
  EXCHANGE_STORY_TYPES,
  type ProofFile,
  type ProofSubject,
  type ProofResult,
  type BuiltProof,
} from './proof.ts';
export {
  cosign,
  cosignedMessage,
  cosignerKey,
  cosignerKeyId,
  cosignerVerifierKey,
  parseCosignerKey,
  verifyCosignature,
  splitNote,
  addSignatures,
  witnessName,
  witnessIdOf,
  ALG_COSIGNATURE_V1,
  COSIGNATURE_V1_HEADER,
  type CosignerKey,
  type SignatureLine,
} from './cosign.ts';
export {
  countWitnesses,
  inPolicy,
  parseWitnessPolicy,
  witnessPolicySchema,
  DEFAULT_WITNESS_POLICY,
  DEFAULT_WITNESS_QUORUM,
  MAX_COSIGNATURES_READ,
  MAX_POLICY_WITNESSES,
  type WitnessPolicy,
  type KnownWitness,
  type WitnessCount,
} from './policy.ts';
export { Witness, witnessEvidenceSchema, type WitnessEvidence, type WitnessOutcome, type WitnessOptions } from './witness.ts';
export { MAX_WITNESS_NOTES, MAX_WITNESS_EVIDENCE } from './codec.ts';
export { CONSENT_STORY_TYPES } from './proof.ts';
export { main } from './cli.ts';
