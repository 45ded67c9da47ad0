import { z } from 'zod';
import { AGENT_URI_PREFIX, isHospitalId } from '../../certs/index.ts';
import { AgentError } from '../errors.ts';
import { FHIR_DATE_TIME_RULE, parseFhirDateTime } from '../fhir/datetime.ts';
import { SCOPE_PATTERN } from '../../ledger/index.ts';
import { ALL_SCOPE, PURPOSES, type Consent, type Purpose } from './model.ts';

/** FHIR code system of purposes of use. */
export const ACT_REASON_SYSTEM = 'http://terminology.hl7.org/CodeSystem/v3-ActReason';
/** FHIR code system of resource types (Consent.provision.class). */
export const RESOURCE_TYPE_SYSTEM = 'http://hl7.org/fhir/resource-types';
/** Identifier system under which exported consents name the patient by keyed hash. */
export const PATIENT_HMAC_SYSTEM = 'urn:hie:patient-hmac';

/** A consent as requested by the EHR, before the patient id is hashed. */
export interface ConsentGrant {
  patientId: string;
  grantees: string[];
  purposes: Purpose[];
  /** FHIR resource types covered, or ['*'] for all. */
  scope: string[];
  validFrom?: string | undefined;
  validUntil: string;
}

const coding = z.object({ system: z.string().optional(), code: z.string().optional() }).passthrough();
const identifier = z.object({ system: z.string().optional(), value: z.string().optional() }).passthrough();

const fhirConsent = z
  .object({
    resourceType: z.literal('Consent'),
    status: z.string(),
    patient: z.object({ reference: z.string().optional(), identifier: identifier.optional() }).passthrough(),
    provision: z
      .object({
        type: z.string().optional(),
        period: z.object({ start: z.string().optional(), end: z.string().optional() }).passthrough().optional(),
        actor: z
          .array(z.object({ reference: z.object({ reference: z.string().optional(), identifier: identifier.optional() }).passthrough() }).passthrough())
          .optional(),
        purpose: z.array(coding).optional(),
        class: z.array(coding).optional(),
      })
      .passthrough(),
  })
  .passthrough();

function invalid(message: string): AgentError {
  return new AgentError('ERR_INVALID_FHIR', `FHIR Consent: ${message}`);
}

/** A malformed date: ERR_BAD_REQUEST naming the field (never echoing the value). */
function badDate(field: string): AgentError {
  return new AgentError('ERR_BAD_REQUEST', `FHIR Consent: ${field}: ${FHIR_DATE_TIME_RULE}`);
}

function granteeOf(actor: {
  reference: { reference?: string | undefined; identifier?: { system?: string | undefined; value?: string | undefined } | undefined };
}): string | undefined {
  const id = actor.reference.identifier;
  if (id?.value?.startsWith(AGENT_URI_PREFIX)) return id.value.slice(AGENT_URI_PREFIX.length);
  if (id?.system === 'urn:hie:agent' && id.value) return id.value;
  const ref = actor.reference.reference;
  if (ref?.startsWith('Organization/')) return ref.slice('Organization/'.length);
  return undefined;
}

/**
 * Reads a FHIR R4 Consent resource into a grant: `status` active,
 * `provision.type` permit, actors naming the recipient hospitals
 * (identifier `urn:hie:agent:<id>` or `Organization/<id>`), `provision.period.end`
 * required; period dates are FHIR `dateTime`s, strictly (a partial date covers
 * its whole year, month or day: see fhir/datetime.ts), purposes as v3 ActReason codes, `provision.class` as FHIR resource
 * types (everything when absent). The patient is `patient.identifier` (`system|value`)
 * or `patient.reference` `Patient/<id>`.
 */
export function grantFromFhirConsent(resource: unknown): ConsentGrant {
  const parsed = fhirConsent.safeParse(resource);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw invalid(`${issue?.path.join('.') || 'resource'}: ${issue?.message ?? 'invalid'}`);
  }
  const c = parsed.data;
  if (c.status !== 'active') throw invalid(`status must be 'active', got '${c.status}'`);
  if ((c.provision.type ?? 'permit') !== 'permit') throw invalid("provision.type must be 'permit'");
  let patientId: string | undefined;
  if (c.patient.identifier?.value) {
    patientId = c.patient.identifier.system ? `${c.patient.identifier.system}|${c.patient.identifier.value}` : c.patient.identifier.value;
  } else if (c.patient.reference?.startsWith('Patient/')) {
    patientId = c.patient.reference.slice('Patient/'.length);
  }
  if (!patientId) throw invalid('patient.identifier.value or patient.reference Patient/<id> is required');
  const grantees = [...new Set((c.provision.actor ?? []).map(granteeOf).filter((g): g is string => g !== undefined))];
  if (grantees.length === 0 || grantees.length > 32 || !grantees.every(isHospitalId)) {
    throw invalid('provision.actor must name 1-32 recipient hospitals (identifier urn:hie:agent:<id>)');
  }
  const end = c.provision.period?.end;
  if (!end) throw invalid('provision.period.end (valid until) is required');
  const until = parseFhirDateTime(end, 'end');
  if (!until) throw badDate('provision.period.end');
  const start = c.provision.period?.start;
  const from = start === undefined ? undefined : parseFhirDateTime(start, 'start');
  if (start !== undefined && !from) throw badDate('provision.period.start');
  const purposes = (c.provision.purpose ?? []).map((p) => p.code);
  if (purposes.length === 0) throw invalid('provision.purpose needs at least one v3 ActReason code');
  for (const p of purposes) if (!PURPOSES.includes(p as Purpose)) throw invalid(`unsupported purpose '${String(p)}' (use ${PURPOSES.join(', ')})`);
  const classes = (c.provision.class ?? []).map((k) => k.code);
  for (const k of classes)
    if (typeof k !== 'string' || !SCOPE_PATTERN.test(k)) throw invalid(`provision.class '${String(k).slice(0, 64)}' is not a FHIR resource type`);
  return {
    patientId,
    grantees,
    purposes: [...new Set(purposes)] as Purpose[],
    scope: classes.length === 0 ? [ALL_SCOPE] : [...new Set(classes as string[])],
    validFrom: from?.toISOString(),
    validUntil: until.toISOString(),
  };
}

/** A recorded consent as a FHIR R4 Consent resource; the patient is named only by keyed hash. */
export function consentToFhir(consent: Consent, grantor: string): Record<string, unknown> {
  return {
    resourceType: 'Consent',
    id: consent.id,
    status: consent.revokedAt ? 'inactive' : 'active',
    scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
    category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
    patient: { identifier: { system: PATIENT_HMAC_SYSTEM, value: consent.patientHash } },
    dateTime: consent.grantedAt,
    organization: [{ identifier: { system: 'urn:ietf:rfc:3986', value: `${AGENT_URI_PREFIX}${grantor}` } }],
    provision: {
      type: 'permit',
      period: { start: consent.validFrom, end: consent.revokedAt ?? consent.validUntil },
      actor: consent.grantees.map((grantee) => ({
        role: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'IRCP' }] },
        reference: { identifier: { system: 'urn:ietf:rfc:3986', value: `${AGENT_URI_PREFIX}${grantee}` } },
      })),
      purpose: consent.purposes.map((code) => ({ system: ACT_REASON_SYSTEM, code })),
      ...(consent.scope.includes(ALL_SCOPE) ? {} : { class: consent.scope.map((code) => ({ system: RESOURCE_TYPE_SYSTEM, code })) }),
    },
  };
}
