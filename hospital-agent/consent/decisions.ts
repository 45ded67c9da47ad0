/**
 * Consent decisions: what the release gate decided, permit or deny, kept in
 * a bounded local log (never the replicated ledger: a refusal is about data
 * that never left, and the ledger is read by other hospitals). The patient
 * is a keyed hash, as everywhere outside the EHR.
 */
import type { Outside } from './scope.ts';

/** One decision of the release gate. */
export interface ConsentDecision {
  /** When it was decided (ISO 8601, UTC, ms). */
  at: string;
  decision: 'permit' | 'deny';
  /** Where: at submission (`admit`) or at send time (`release`, the check that counts). */
  stage: 'admit' | 'release';
  /** The consent the request named. */
  consent: string;
  /** Keyed hash of the patient (HMAC, see consent/patient.ts). */
  patient: string;
  recipient: string;
  purpose: string;
  /** The exchange, when the decision is about one already recorded. */
  exchange?: string;
  /** Deny: the ERR_CONSENT_* code. */
  code?: string;
  /** Deny on scope: what was out of it (types, categories, labels: names, never data). */
  outside?: Outside;
}

/** Where decisions go (a port: the consent service does not depend on the store that keeps them). */
export interface DecisionLog {
  /** Keeps one decision; must not throw (a log that cannot be written never changes the decision). */
  record(decision: ConsentDecision): void;
}
