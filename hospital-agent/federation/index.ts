/**
 * The agent's view of the federation: the CRL and member directory it
 * adopted (from the relay, the operator's CRL file, or its data directory),
 * what the directory says about a recipient, and its own standing.
 */
export {
  FederationDocuments,
  FEDERATION_DIR,
  FEDERATION_FILES,
  CRL_CLOCK_SKEW_MS,
  type FederationDocumentType,
  type RefusalReason,
  type Offered,
  type FederationDocumentsEvents,
} from './documents.ts';
export { MemberRefusedError, assertMember } from './membership.ts';
export { SelfStanding, REVOKED_RETRY_MS, REVOKED_REASON, type HoldOff } from './standing.ts';
