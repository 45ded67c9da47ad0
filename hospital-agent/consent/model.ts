import { timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { HOSPITAL_ID_PATTERN } from '../../certs/index.ts';
import { CODING_PATTERN, ID_PATTERN, PURPOSES, REVOCATION_REASONS, SCOPE_PATTERN, TS_PATTERN } from '../../ledger/index.ts';
import { AgentError } from '../errors.ts';
import type { BundleKinds } from '../fhir/labels.ts';
import { ALL_SCOPE, bundleNeeds, covered, outsideScope, resourceNeed } from './scope.ts';

export { PURPOSES };
/** A purpose of use (HL7 v3 PurposeOfUse code), as the ledger records it. */
export type Purpose = (typeof PURPOSES)[number];

export { ALL_SCOPE };
/** Scope a DICOM imaging study is released under. */
export const IMAGING_SCOPE = 'ImagingStudy';
/** Scope any other binary document is released under. */
export const BINARY_SCOPE = 'Binary';

/**
 * The scope items a release needs (see consent/scope.ts): for a FHIR Bundle
 * the kinds of resource and sensitive labels it holds (fhir/labels.ts), or
 * its resource types alone (checked by type only); an `ImagingStudy` with
 * no category for DICOM, a `Binary` with none for anything else.
 */
export function scopeOf(contentType: string, bundle?: BundleKinds | readonly string[]): string[] {
  const type = contentType.split(';')[0]?.trim().toLowerCase() ?? '';
  if (type === 'application/fhir+json' && bundle) return Array.isArray(bundle) ? [...(bundle as readonly string[])] : bundleNeeds(bundle as BundleKinds);
  if (type === 'application/dicom' || type.startsWith('multipart/related')) return [resourceNeed(IMAGING_SCOPE)];
  return [resourceNeed(BINARY_SCOPE)];
}

/** A recorded consent. The patient appears only as a keyed hash. Mirrors the ledger's `consent.granted` body. */
export const consentSchema = z.strictObject({
  id: z.string().regex(ID_PATTERN),
  patientHash: z.string().regex(/^[0-9a-f]{64}$/),
  grantees: z.array(z.string().regex(HOSPITAL_ID_PATTERN)).min(1).max(32),
  purposes: z.array(z.enum(PURPOSES)).min(1).max(PURPOSES.length),
  scope: z.array(z.string().regex(SCOPE_PATTERN)).min(1).max(64),
  /** Data categories (`system|code`) the consent is limited to; absent: any category. */
  categories: z.array(z.string().regex(CODING_PATTERN)).min(1).max(64).optional(),
  /** Sensitive security labels (`system|code`) the consent names: the only sensitive data it releases. */
  labels: z.array(z.string().regex(CODING_PATTERN)).min(1).max(64).optional(),
  validFrom: z.string().regex(TS_PATTERN),
  validUntil: z.string().regex(TS_PATTERN),
  grantedAt: z.string().regex(TS_PATTERN),
  revokedAt: z.string().regex(TS_PATTERN).optional(),
  /** Why it was revoked (the `consent.revoked` entry's reason). */
  revocationReason: z.enum(REVOCATION_REASONS).optional(),
});

/** A recorded consent. */
export type Consent = z.infer<typeof consentSchema>;

/** What an outgoing release needs a consent to cover. */
export interface ReleaseRequest {
  patientHash: string;
  recipient: string;
  purpose: Purpose;
  /** Scope items the payload needs (see {@link scopeOf}); undefined skips the scope check (pre-check before the body is read). */
  scope: readonly string[] | undefined;
  at: Date;
  /** The exchange released, when known (for the decision log). */
  exchange?: string | undefined;
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
  if (!consent || !sameHash(consent.patientHash, request.patientHash) || !consent.grantees.includes(request.recipient)) {
    throw new AgentError(
      'ERR_CONSENT_MISSING',
      `no consent covers this patient for recipient '${request.recipient}'`,
      consent ? { detail: { consentId: consent.id } } : undefined,
    );
  }
  const t = request.at.getTime();
  if (consent.revokedAt !== undefined && new Date(consent.revokedAt).getTime() <= t) {
    throw new AgentError('ERR_CONSENT_REVOKED', `consent ${consent.id} was revoked at ${consent.revokedAt}`, { detail: { consentId: consent.id } });
  }
  if (t < new Date(consent.validFrom).getTime() || t > new Date(consent.validUntil).getTime()) {
    throw new AgentError('ERR_CONSENT_EXPIRED', `consent ${consent.id} is valid from ${consent.validFrom} until ${consent.validUntil}`, {
      detail: { consentId: consent.id },
    });
  }
  if (!consent.purposes.includes(request.purpose)) {
    throw new AgentError('ERR_CONSENT_SCOPE', `consent ${consent.id} does not permit purpose ${request.purpose}`, { detail: { consentId: consent.id } });
  }
  if (request.scope !== undefined) {
    const outside = outsideScope(consent, request.scope);
    if (outside.labels.length > 0) {
      throw new AgentError(
        'ERR_CONSENT_SENSITIVE',
        `consent ${consent.id} does not name the sensitive label${outside.labels.length > 1 ? 's' : ''} ${outside.labels.join(', ')} (data so labelled is released only under a consent that names the label)`,
        { detail: { consentId: consent.id, outside } },
      );
    }
    if (!covered(outside) || request.scope.length === 0) {
      const parts = [
        ...(outside.types.length > 0 ? [`resource type ${outside.types.join(', ')}`] : []),
        ...(outside.categories.length > 0 ? [`no category it names on ${outside.categories.join('; ')}`] : []),
      ];
      throw new AgentError('ERR_CONSENT_SCOPE', `consent ${consent.id} does not cover ${parts.join('; ') || 'this data'}`, {
        detail: { consentId: consent.id, outside },
      });
    }
  }
}
