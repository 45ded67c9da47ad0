/** Consent: the rules a release must satisfy, patient-id hashing, FHIR Consent import and export. */
export {
  PURPOSES,
  ALL_SCOPE,
  IMAGING_SCOPE,
  BINARY_SCOPE,
  scopeOf,
  consentSchema,
  checkConsent,
  type Consent,
  type Purpose,
  type ReleaseRequest,
} from './model.ts';
export { grantFromFhirConsent, consentToFhir, ACT_REASON_SYSTEM, RESOURCE_TYPE_SYSTEM, PATIENT_HMAC_SYSTEM, type ConsentGrant } from './fhir.ts';
export { patientHash, PATIENT_HMAC_LABEL, MIN_PATIENT_SECRET_BYTES } from './patient.ts';
