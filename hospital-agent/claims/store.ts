/** Claims as this member keeps them: sent (hospital) or received (insurer), with an index on the Claim's identifier. */
import type { StateDb } from '../store/state-db.ts';
import { FiledStore } from './filed-store.ts';
import type { ClaimOutcome } from './model.ts';

/** One claim. */
export interface ClaimRecord {
  /** The federation's claim id (a UUID both agents file it under). */
  id: string;
  direction: 'outgoing' | 'incoming';
  /** The other member: the insurer of an outgoing claim, the hospital of an incoming one. */
  peer: string;
  /** `system|value` of the Claim's identifier. */
  identifier: string;
  /** `sent` until the insurer's first response; then its latest outcome. */
  status: 'sent' | ClaimOutcome;
  /** The claimed total, minor units. */
  amount: number;
  currency: string;
  /** Benefit paid by the latest response, minor units. */
  paid?: number;
  /** SHA-256 of the Claim's JCS bytes, base64url. */
  hash: string;
  createdAt: string;
  updatedAt: string;
  /** Outgoing: the consent it was sent under and the patient's keyed hash. */
  consentId?: string;
  patientHash?: string;
  /** The Claim and its Coverage (kept inside this member, for its own systems). */
  claim: Record<string, unknown>;
  coverage: Record<string, unknown>;
  /** Outgoing and not yet answered: the sealed claim, sent again until the insurer answers. */
  jwe?: string;
  /** The signed ClaimResponses (compact JWS), oldest first. */
  responses: string[];
}

/** A claim as lists show it (without the FHIR resources and the signatures). */
export type ClaimSummary = Omit<ClaimRecord, 'claim' | 'coverage' | 'jwe' | 'responses'> & { responses: number };

/** The summary of a claim. */
export function summarize(r: ClaimRecord): ClaimSummary {
  const { claim: _c, coverage: _v, jwe: _j, responses, ...rest } = r;
  return { ...rest, responses: responses.length };
}

/** See the module comment. */
export class ClaimStore extends FiledStore<ClaimRecord> {
  constructor(db: StateDb) {
    super(db, 'claims', 'claim-identifiers');
  }

  /** The claim filed under an identifier, if any. */
  byClaimIdentifier(direction: ClaimRecord['direction'], peer: string, identifier: string): Promise<ClaimRecord | undefined> {
    return this.filedUnder(direction, peer, identifier);
  }
}
