/** Patients as a party: enrolment by one-time code, the patient channel (via the relay's hub), consent requests the patient signs, their view. */
export { PatientService, DEFAULT_CODE_SECONDS, type PatientServiceOptions, type Enrolment, type RequestTerms } from './service.ts';
export { PatientHub, generateAgentPatientKey, type PatientHubOptions } from './hub.ts';
export { PatientStore, type CodeRecord, type DeviceRecord, type ConsentRequestRecord } from './store.ts';
export { issuePatientCredential, newChannel, DEFAULT_ENROL_CREDENTIAL_SECONDS, DEFAULT_SESSION_CREDENTIAL_SECONDS, type CredentialSpec } from './credential.ts';
export { signedConsentFhir, checkGrantedConsent, deviceThumbprint, type ConsentTerms, type GrantedBody, type Attestation } from './signed-consent.ts';
