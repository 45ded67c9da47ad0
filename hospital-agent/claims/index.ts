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
export {
  signClaimResponse,
  verifyClaimResponse,
  verifyInsurerSigned,
  ClaimSignatureError,
  CLAIM_RESPONSE_JWS_TYPE,
  type VerifiedClaimResponse,
} from './signing.ts';
export { claimWireSchema, encodeClaimWire, CLAIM_WIRE_KINDS, MAX_CLAIM_MESSAGE_CHARS, type ClaimWireMessage } from './wire.ts';
export {
  EligibilityService,
  ELIGIBILITY_SCOPE,
  ELIGIBILITY_OUTCOMES,
  ELIGIBILITY_RESPONSE_JWS_TYPE,
  checkEligibilityRequest,
  eligibilityResponse,
  verifyEligibilityResponse,
  type EligibilitySubmission,
  type EligibilityAnswer,
} from './eligibility.ts';
export { EligibilityStore, summarizeEligibility, type EligibilityRecord, type EligibilitySummary } from './eligibility-store.ts';
export { eligibilityWireSchema, encodeEligibilityWire, ELIGIBILITY_WIRE_KINDS, type EligibilityWireMessage } from './wire.ts';
