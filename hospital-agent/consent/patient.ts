import { createHmac } from 'node:crypto';

/** Domain-separation label mixed into every patient-id HMAC. */
export const PATIENT_HMAC_LABEL = 'hie-patient-id/v1';
/** Shortest accepted HMAC secret, in bytes. */
export const MIN_PATIENT_SECRET_BYTES = 32;

/**
 * A patient as the EHR names one (`Hie-Patient-Id`, a consent's `patientId`):
 * `system|value` (a FHIR Identifier), `|value` (an identifier with no
 * system), or a bare `value`, which is a value under the hospital's own
 * identifier system (`patients.identifierSystem`), or under any system when
 * none is configured.
 */
export interface PatientName {
  /** The identifier's system: '' for none, undefined for any (a bare value with no system configured). */
  system: string | undefined;
  value: string;
}

/** Reads a patient id (see {@link PatientName}); `identifierSystem` is the hospital's own system for bare values. */
export function parsePatientId(patientId: string, identifierSystem?: string): PatientName {
  const id = patientId.trim();
  const bar = id.indexOf('|');
  if (bar < 0) return { system: identifierSystem, value: id };
  return { system: id.slice(0, bar).trim(), value: id.slice(bar + 1).trim() };
}

/**
 * The canonical form of a patient id, the one its keyed hash is computed
 * from: `system|value`, except that an identifier of the hospital's own
 * system (`identifierSystem`) is written as its bare value. So a bare MRN and
 * the same MRN with the system spelled out hash alike, and every consent
 * granted with a bare id before this form existed keeps its hash.
 */
export function canonicalPatientId(patientId: string, identifierSystem?: string): string {
  const p = parsePatientId(patientId, identifierSystem);
  return p.system === undefined || p.system === identifierSystem ? p.value : `${p.system}|${p.value}`;
}

/**
 * Keyed hash of a patient identifier: HMAC-SHA-256(secret, label || 0x00 ||
 * canonical id), lowercase hex, where the canonical id is
 * {@link canonicalPatientId} of `patientId` under `identifierSystem`. This is
 * the only form in which a patient id leaves the agent's memory (ledger
 * entries, logs).
 */
export function patientHash(secret: Buffer, patientId: string, identifierSystem?: string): string {
  if (secret.length < MIN_PATIENT_SECRET_BYTES) throw new TypeError(`patient HMAC secret must be at least ${MIN_PATIENT_SECRET_BYTES} bytes`);
  const id = canonicalPatientId(patientId, identifierSystem);
  if (id.length === 0 || id.length > 256 || parsePatientId(patientId, identifierSystem).value === '')
    throw new TypeError('patient id must be 1-256 characters');
  return createHmac('sha256', secret).update(PATIENT_HMAC_LABEL).update('\u0000').update(id, 'utf8').digest('hex');
}
