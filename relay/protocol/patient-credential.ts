// One job: the patient channel credential's format, which the hospital agent issues and the relay checks.
import { z } from 'zod';
import { HOSPITAL_ID_PATTERN } from '../../certs/index.ts';

/**
 * A patient channel credential is a compact JWS (RFC 7515, RS256) signed with the hospital agent's federation
 * certificate key, that certificate in `x5c`. Its claims name only the hospital (`iss`), a random pseudonymous
 * channel id (`ch`) and, for a session credential, the device's public signing key (`cnf.jwk`, RFC 7800): never
 * the patient. The relay checks it against the federation CA and CRL and stores nothing.
 */
export const PATIENT_CREDENTIAL_TYPE = 'hie-patient-channel+jwt';
/** The audience every patient credential names. */
export const PATIENT_CREDENTIAL_AUDIENCE = 'hie-relay';
/** The path patients open their WebSocket on (`?cred=<credential>&pop=<proof>`). */
export const PATIENT_PATH = '/v1/patient';
/** The path a hospital agent opens its patient hub on (mTLS, like /v1/agent). */
export const PATIENT_HUB_PATH = '/v1/patient-hub';
/** Longest credential accepted (bytes). */
export const MAX_PATIENT_CREDENTIAL_BYTES = 8192;
/** Longest lifetime (exp - iat) of an enrolment credential: it only opens the one enrolment session. */
export const MAX_ENROL_CREDENTIAL_SECONDS = 24 * 3600;
/** Longest lifetime of a session credential (the agent hands a fresh one in every session). */
export const MAX_SESSION_CREDENTIAL_SECONDS = 30 * 24 * 3600;
/** How far a proof of possession's `iat` may be from the relay's clock (seconds). */
export const POP_SKEW_SECONDS = 120;
/** Bytes of a channel id. */
export const CHANNEL_BYTES_LENGTH = 16;
/** Clock skew tolerated on iat/exp (seconds). */
export const CREDENTIAL_SKEW_SECONDS = 60;

const b64u = z.string().regex(/^[A-Za-z0-9_-]+$/);

/** The claims of a patient channel credential. */
export const patientCredentialClaims = z.strictObject({
  iss: z.string().regex(HOSPITAL_ID_PATTERN),
  aud: z.literal(PATIENT_CREDENTIAL_AUDIENCE),
  /** Random channel id: 16 bytes, base64url. */
  ch: z.string().regex(/^[A-Za-z0-9_-]{22}$/),
  /** `enrol`: the one-time enrolment session (no device key yet); `session`: an enrolled device, proof of possession required. */
  use: z.enum(['enrol', 'session']),
  cnf: z.strictObject({ jwk: z.strictObject({ kty: z.literal('EC'), crv: z.literal('P-256'), x: b64u.length(43), y: b64u.length(43) }) }).optional(),
  iat: z.number().int().nonnegative(),
  exp: z.number().int().positive(),
});

/** The claims of a patient channel credential. */
export type PatientCredentialClaims = z.infer<typeof patientCredentialClaims>;
