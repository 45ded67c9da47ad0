/** Patients at the relay: admission of patient connections by hospital-signed credential, routing to the hospital's hub, the app's files. */
export { PatientChannels, HubFrame, hubFrame, parseHubFrame, HUB_CHANNEL_CHARS, DEFAULT_MAX_PATIENT_MESSAGE, DEFAULT_MAX_HUB_BUFFER } from './channels.ts';
export type { PatientTap, PatientChannelsOptions } from './channels.ts';
export { verifyPatientCredential, type CredentialTrust, type AdmittedPatient } from './credential.ts';
export { PatientGate, PATIENT_APP_PATH, PATIENT_APP_DIR, PATIENT_REFUSAL_HEADER, type PatientGateOptions } from './gate.ts';
export { PatientRefusal, type PatientRefusalCode } from './errors.ts';
