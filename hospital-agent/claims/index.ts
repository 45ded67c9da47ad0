/** Insurance claims between hospitals and insurer members (docs/insurers.md). */
export { ClaimService, CLAIM_PURPOSE, CLAIM_SCOPE, MAX_CLAIM_AGE_MS, claimChargeId, type ClaimSubmission } from './service.ts';
export { ClaimStore, summarize, type ClaimRecord, type ClaimSummary } from './store.ts';
export {
  checkClaim,
  claimResponse,
  jcsHash,
  toMinorUnits,
  fromMinorUnits,
  FINAL_OUTCOMES,
  MEMBER_SYSTEM,
  CLAIM_ID_SYSTEM,
  MAX_DISPOSITION_CHARS,
} from './model.ts';
export type { CheckedClaim, Adjudication, ClaimOutcome } from './model.ts';
export { signClaimResponse, verifyClaimResponse, ClaimSignatureError, CLAIM_RESPONSE_JWS_TYPE, type VerifiedClaimResponse } from './signing.ts';
export { claimWireSchema, encodeClaimWire, CLAIM_WIRE_KINDS, MAX_CLAIM_MESSAGE_CHARS, type ClaimWireMessage } from './wire.ts';
