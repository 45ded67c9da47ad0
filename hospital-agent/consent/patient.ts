import { createHmac } from 'node:crypto';

/** Domain-separation label mixed into every patient-id HMAC. */
export const PATIENT_HMAC_LABEL = 'hie-patient-id/v1';
/** Shortest accepted HMAC secret, in bytes. */
export const MIN_PATIENT_SECRET_BYTES = 32;

/**
 * Keyed hash of a patient identifier: HMAC-SHA-256(secret, label || 0x00 ||
 * id), lowercase hex. This is the only form in which a patient id leaves the
 * agent's memory (ledger entries, logs). The id is trimmed; `system|value`
 * identifiers are hashed as given.
 */
export function patientHash(secret: Buffer, patientId: string): string {
  if (secret.length < MIN_PATIENT_SECRET_BYTES) throw new TypeError(`patient HMAC secret must be at least ${MIN_PATIENT_SECRET_BYTES} bytes`);
  const id = patientId.trim();
  if (id.length === 0 || id.length > 256) throw new TypeError('patient id must be 1-256 characters');
  return createHmac('sha256', secret).update(PATIENT_HMAC_LABEL).update('\u0000').update(id, 'utf8').digest('hex');
}
