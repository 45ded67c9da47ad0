// One job: the FHIR Consent a patient signs, rebuilt the same way by the hospital and by any recipient, and its checks.
import { consentToFhir } from '../consent/fhir.ts';
import type { Consent, Purpose } from '../consent/model.ts';
import { AgentError } from '../errors.ts';
import { verifyConsentSignature, jwkThumbprint, type EcPublicJwk } from '../../patient-app/protocol.js';

/** The terms of a consent as the patient sees and signs them. */
export interface ConsentTerms {
  id: string;
  patientHash: string;
  grantees: string[];
  purposes: Purpose[];
  scope: string[];
  categories?: string[] | undefined;
  labels?: string[] | undefined;
  validFrom: string;
  validUntil: string;
}

/**
 * The canonical FHIR Consent (IHE PCF, consent/fhir.ts) a patient signs for `terms` at `signedAt`: its `dateTime` is the
 * signing time; a revocation is the same Consent with status `inactive` and the period ending at `revokedAt`.
 */
export function signedConsentFhir(terms: ConsentTerms, grantor: string, signedAt: string, revokedAt?: string): Record<string, unknown> {
  const consent: Consent = {
    id: terms.id,
    patientHash: terms.patientHash,
    grantees: terms.grantees,
    purposes: terms.purposes,
    scope: terms.scope,
    ...(terms.categories ? { categories: terms.categories } : {}),
    ...(terms.labels ? { labels: terms.labels } : {}),
    validFrom: terms.validFrom,
    validUntil: terms.validUntil,
    grantedAt: signedAt,
    ...(revokedAt ? { revokedAt } : {}),
  };
  return consentToFhir(consent, grantor);
}

/** A `consent.granted` ledger body (ledger/schema.ts), as far as these checks read it. */
export interface GrantedBody {
  consent: string;
  patient: string;
  grantees: string[];
  purposes: Purpose[];
  scope: string[];
  categories?: string[] | undefined;
  labels?: string[] | undefined;
  validFrom: string;
  validUntil?: string | undefined;
  attestation?: 'patient-signed' | undefined;
  signature?: string | undefined;
  signedAt?: string | undefined;
  device?: EcPublicJwk | undefined;
}

/** How a recipient regards a consent: signed by the patient (signature checked) or attested by the hospital alone. */
export type Attestation = 'patient-signed' | 'attested-by-hospital';

/**
 * What a recipient knows of the consent a release is under, from the `consent.granted` body `grantor` wrote: a body that
 * claims the patient's signature must carry one that verifies over the FHIR Consent rebuilt from the body itself, so any
 * change the hospital made after the patient signed (a wider purpose, another grantee, a later end) is refused with
 * ERR_CONSENT_SIGNATURE. `requirePatientSigned` refuses hospital-attested consents (ERR_CONSENT_NOT_PATIENT_SIGNED).
 */
export async function checkGrantedConsent(body: GrantedBody, grantor: string, options: { requirePatientSigned?: boolean } = {}): Promise<Attestation> {
  const claimsSignature = body.attestation === 'patient-signed' || body.signature !== undefined || body.device !== undefined;
  if (!claimsSignature) {
    if (options.requirePatientSigned) {
      throw new AgentError('ERR_CONSENT_NOT_PATIENT_SIGNED', `consent ${body.consent} is attested by the hospital, not signed by the patient`, {
        detail: { consentId: body.consent },
      });
    }
    return 'attested-by-hospital';
  }
  const refuse = (why: string): AgentError =>
    new AgentError('ERR_CONSENT_SIGNATURE', `the patient's signature on consent ${body.consent} ${why}`, { detail: { consentId: body.consent } });
  if (body.attestation !== 'patient-signed' || !body.signature || !body.signedAt || !body.device || !body.validUntil) throw refuse('is incomplete');
  const fhir = signedConsentFhir(
    {
      id: body.consent,
      patientHash: body.patient,
      grantees: body.grantees,
      purposes: body.purposes,
      scope: body.scope,
      categories: body.categories,
      labels: body.labels,
      validFrom: body.validFrom,
      validUntil: body.validUntil,
    },
    grantor,
    body.signedAt,
  );
  try {
    await verifyConsentSignature(body.signature, body.device, fhir);
  } catch {
    throw refuse('does not verify over the consent as recorded (altered after the patient signed, or not signed by the device key)');
  }
  return 'patient-signed';
}

/** The RFC 7638 thumbprint of a device key (how the ledger and the patient's view name a device). */
export const deviceThumbprint = (jwk: EcPublicJwk): Promise<string> => jwkThumbprint(jwk);
