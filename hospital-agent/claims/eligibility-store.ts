/** Coverage eligibility requests as this member keeps them: sent (hospital) or received (insurer), with an index on the request's identifier. */
import type { StateDb } from '../store/state-db.ts';
import { FiledStore } from './filed-store.ts';
import type { ClaimOutcome } from './model.ts';

/** One eligibility request. */
export interface EligibilityRecord {
  /** The federation's request id (a UUID both agents file it under). */
  id: string;
  direction: 'outgoing' | 'incoming';
  /** The insurer of an outgoing request, the hospital of an incoming one. */
  peer: string;
  /** `system|value` of the request's identifier. */
  identifier: string;
  /** `sent` until the insurer's first response; then its latest outcome. */
  status: 'sent' | ClaimOutcome;
  /** SHA-256 of the CoverageEligibilityRequest's JCS bytes, base64url. */
  hash: string;
  createdAt: string;
  updatedAt: string;
  /** Outgoing: the consent it was sent under and the patient's keyed hash. */
  consentId?: string;
  patientHash?: string;
  /** The CoverageEligibilityRequest and its Coverage (kept inside this member). */
  request: Record<string, unknown>;
  coverage: Record<string, unknown>;
  /** Outgoing and not yet answered: the sealed request, sent again until the insurer answers. */
  jwe?: string;
  /** The signed CoverageEligibilityResponses (compact JWS), oldest first. */
  responses: string[];
}

/** A request as lists show it (without the FHIR resources and the signatures). */
export type EligibilitySummary = Omit<EligibilityRecord, 'request' | 'coverage' | 'jwe' | 'responses'> & { responses: number };

/** The summary of a request. */
export function summarizeEligibility(r: EligibilityRecord): EligibilitySummary {
  const { request: _r, coverage: _c, jwe: _j, responses, ...rest } = r;
  return { ...rest, responses: responses.length };
}

/** See the module comment. */
export class EligibilityStore extends FiledStore<EligibilityRecord> {
  constructor(db: StateDb) {
    super(db, 'eligibility', 'eligibility-identifiers');
  }

  /** The request filed under an identifier, if any. */
  byRequestIdentifier(direction: EligibilityRecord['direction'], peer: string, identifier: string): Promise<EligibilityRecord | undefined> {
    return this.filedUnder(direction, peer, identifier);
  }
}
