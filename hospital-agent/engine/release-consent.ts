import type { Ledger } from '../../ledger/index.ts';
import { AgentError } from '../errors.ts';
import { checkGrantedConsent, type Attestation, type GrantedBody } from '../patients/index.ts';

/**
 * The recipient's check of the consent a release names (its `consentRef`), from the sender's `consent.granted` entry in
 * this agent's copy of the ledger: a consent that claims the patient's signature must carry one that verifies
 * (ERR_CONSENT_SIGNATURE otherwise, whatever the policy); with `requirePatientSigned`, a hospital-attested consent, or one
 * not (yet) replicated here, is refused (ERR_CONSENT_NOT_PATIENT_SIGNED). A release naming no consent passes (`undefined`),
 * and so, without the policy, does one under a consent this agent has not seen yet.
 */
export async function checkReleaseConsent(
  ledger: Ledger,
  from: string,
  consentRef: string | null,
  requirePatientSigned: boolean,
): Promise<Attestation | undefined> {
  // A release under no consent (a claim, a prescription, a reply to a records request) is not this check's business.
  if (consentRef === null) return undefined;
  const granted = await ledger.consentGranted(consentRef, from);
  if (!granted) {
    if (requirePatientSigned) {
      throw new AgentError('ERR_CONSENT_NOT_PATIENT_SIGNED', `consent ${consentRef} is not in this agent's copy of the sender's ledger feed`, {
        detail: { consentId: consentRef },
      });
    }
    return undefined;
  }
  return checkGrantedConsent(granted.entry.body as unknown as GrantedBody, from, { requirePatientSigned });
}

/** The code a batch item under this consent is refused with ({@link checkReleaseConsent}), or undefined if it passes. */
export async function consentRefusal(ledger: Ledger, from: string, consentRef: string | null, requirePatientSigned: boolean): Promise<string | undefined> {
  try {
    await checkReleaseConsent(ledger, from, consentRef, requirePatientSigned);
    return undefined;
  } catch (err) {
    if (err instanceof AgentError && (err.code === 'ERR_CONSENT_SIGNATURE' || err.code === 'ERR_CONSENT_NOT_PATIENT_SIGNED')) return err.code;
    throw err;
  }
}
