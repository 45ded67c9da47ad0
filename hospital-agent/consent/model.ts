import { timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { HOSPITAL_ID_PATTERN } from '../../certs/index.ts';
import { AgentError } from '../errors.ts';

/**
 * Purposes of use a consent can permit (HL7 v3 ActReason codes): treatment,
 * emergency treatment, payment, operations, public health, research, patient request.
 */
export const PURPOSES = ['TREAT', 'ETREAT', 'HPAYMT', 'HOPERAT', 'PUBHLTH', 'HRESCH', 'PATRQT'] as const;
/** A purpose of use. */
export type Purpose = (typeof PURPOSES)[number];

/** Kinds of data a consent can cover: structured FHIR records, imaging studies, other documents. */
export const DATA_CLASSES = ['fhir', 'imaging', 'document'] as const;
/** A kind of data. */
export type DataClass = (typeof DATA_CLASSES)[number];

/** The kind of data a content type carries. */
export function dataClassOf(contentType: string): DataClass {
  const type = contentType.split(';')[0]?.trim().toLowerCase() ?? '';
  if (type === 'application/fhir+json' || type === 'application/fhir+xml') return 'fhir';
  if (type === 'application/dicom' || type === 'application/dicom+json' || type.startsWith('multipart/related')) return 'imaging';
  return 'document';
}

const HEX64 = /^[0-9a-f]{64}$/;

/** A recorded consent. The patient appears only as a keyed hash. */
export const consentSchema = z.strictObject({
  id: z.uuid(),
  patientHash: z.string().regex(HEX64),
  grantee: z.string().regex(HOSPITAL_ID_PATTERN),
  purposes: z.array(z.enum(PURPOSES)).min(1).max(PURPOSES.length),
  classes: z.array(z.enum(DATA_CLASSES)).min(1).max(DATA_CLASSES.length),
  validFrom: z.iso.datetime(),
  validUntil: z.iso.datetime(),
  grantedAt: z.iso.datetime(),
  revokedAt: z.iso.datetime().optional(),
});

/** A recorded consent. */
export type Consent = z.infer<typeof consentSchema>;

/** What an outgoing release needs a consent to cover. */
export interface ReleaseRequest {
  patientHash: string;
  recipient: string;
  purpose: Purpose;
  dataClass: DataClass;
  at: Date;
}

function sameHash(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * Checks that `consent` covers `request`; throws AgentError with
 * ERR_CONSENT_MISSING (no consent, or it is for another patient or hospital),
 * ERR_CONSENT_REVOKED, ERR_CONSENT_EXPIRED or ERR_CONSENT_SCOPE.
 * Messages carry the consent id only, never the patient.
 */
export function checkConsent(consent: Consent | undefined, request: ReleaseRequest): void {
  if (!consent || !sameHash(consent.patientHash, request.patientHash) || consent.grantee !== request.recipient) {
    throw new AgentError('ERR_CONSENT_MISSING', `no consent covers this patient for recipient '${request.recipient}'`, consent ? { detail: { consentId: consent.id } } : undefined);
  }
  const t = request.at.getTime();
  if (consent.revokedAt !== undefined && new Date(consent.revokedAt).getTime() <= t) {
    throw new AgentError('ERR_CONSENT_REVOKED', `consent ${consent.id} was revoked at ${consent.revokedAt}`, { detail: { consentId: consent.id } });
  }
  if (t < new Date(consent.validFrom).getTime() || t > new Date(consent.validUntil).getTime()) {
    throw new AgentError('ERR_CONSENT_EXPIRED', `consent ${consent.id} is valid from ${consent.validFrom} until ${consent.validUntil}`, { detail: { consentId: consent.id } });
  }
  if (!consent.purposes.includes(request.purpose)) {
    throw new AgentError('ERR_CONSENT_SCOPE', `consent ${consent.id} does not permit purpose ${request.purpose}`, { detail: { consentId: consent.id } });
  }
  if (!consent.classes.includes(request.dataClass)) {
    throw new AgentError('ERR_CONSENT_SCOPE', `consent ${consent.id} does not cover ${request.dataClass} data`, { detail: { consentId: consent.id } });
  }
}
