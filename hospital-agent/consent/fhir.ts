import { z } from 'zod';
import { AGENT_URI_PREFIX, isHospitalId } from '../../certs/index.ts';
import { AgentError } from '../errors.ts';
import { FHIR_DATE_TIME_RULE, parseFhirDateTime } from '../fhir/datetime.ts';
import { CODING_PATTERN, SCOPE_PATTERN } from '../../ledger/index.ts';
import { CONFIDENTIALITY_SYSTEM, sensitiveLabel } from '../fhir/labels.ts';
import { ALL_SCOPE, PURPOSES, type Consent, type Purpose } from './model.ts';

/** FHIR code system of purposes of use. */
export const ACT_REASON_SYSTEM = 'http://terminology.hl7.org/CodeSystem/v3-ActReason';
/** FHIR code system of resource types (Consent.provision.class). */
export const RESOURCE_TYPE_SYSTEM = 'http://hl7.org/fhir/resource-types';
/** Identifier system under which exported consents name the patient by keyed hash. */
export const PATIENT_HMAC_SYSTEM = 'urn:hie:patient-hmac';

/** Canonical URLs of the IHE Privacy Consent on FHIR (PCF) profiles an exported Consent may conform to. */
export const PCF_PROFILES = {
  basic: 'https://profiles.ihe.net/ITI/PCF/StructureDefinition/IHE.PCF.consentBasic',
  intermediate: 'https://profiles.ihe.net/ITI/PCF/StructureDefinition/IHE.PCF.consentIntermediate',
  advanced: 'https://profiles.ihe.net/ITI/PCF/StructureDefinition/IHE.PCF.consentAdvanced',
} as const;
/** PCF basic's purposes of use (its BasicPurposeVS): treatment, payment, operations, break-glass. */
export const PCF_BASIC_PURPOSES: readonly string[] = ['TREAT', 'HPAYMT', 'HOPERAT', 'BTG'];
/** Security labels PCF advanced allows in provision.securityLabel (its AdvancedSecurityTagVS), as `system|code`. */
export const PCF_ADVANCED_LABELS: readonly string[] = [
  `${CONFIDENTIALITY_SYSTEM}|R`,
  `${CONFIDENTIALITY_SYSTEM}|N`,
  ...['ETH', 'ETHUD', 'OPIOIDUD', 'PSY', 'SEX', 'HIV'].map((c) => `http://terminology.hl7.org/CodeSystem/v3-ActCode|${c}`),
];
/** The privacy policy an exported Consent names (`policy.uri`, required by PCF): this federation's release-of-information rules. */
export const HIE_CONSENT_POLICY_URI = 'urn:hie:policy:release-of-information:v1';
/** Consent scope code system and code (PCF: `patient-privacy`). */
export const CONSENT_SCOPE_SYSTEM = 'http://terminology.hl7.org/CodeSystem/consentscope';
/** Identifier system under which an exported Consent names its `consent.granted` ledger entry (`sourceReference`). */
export const CONSENT_ID_SYSTEM = 'urn:hie:consent';

/** A consent as requested by the EHR, before the patient id is hashed. */
export interface ConsentGrant {
  patientId: string;
  grantees: string[];
  purposes: Purpose[];
  /** FHIR resource types covered, or ['*'] for all (sensitive data apart). */
  scope: string[];
  /** Data categories (`system|code`) the consent is limited to; absent or empty: any. */
  categories?: string[] | undefined;
  /** Sensitive labels (`system|code`) the consent names; absent or empty: no sensitive data. */
  labels?: string[] | undefined;
  validFrom?: string | undefined;
  validUntil: string;
}

/** Elements of Consent.provision that restrict what a consent covers in ways the agent does not check: refused on import. */
const UNENFORCED_PROVISION_ELEMENTS = ['data', 'dataPeriod', 'action'] as const;
const UNENFORCED_WHY: Record<(typeof UNENFORCED_PROVISION_ELEMENTS)[number], string> = {
  data: 'specific resources (data)',
  dataPeriod: 'when the data was authored (dataPeriod)',
  action: 'action',
};

/** Confidentiality codes at or below normal: naming them permits nothing more than any consent does. */
const NOT_SENSITIVE_CONFIDENTIALITY = ['U', 'L', 'M', 'N'];

/**
 * A security label a consent names, as `system|code`: `system|code`, or a
 * bare code of v3-Confidentiality (`R`, `V`) or of the v3-ActCode
 * sensitivity codes (`PSY`, `HIV`...); undefined when it is not a
 * sensitive label (fhir/labels.ts).
 */
export function normalizeLabel(text: string): string | undefined {
  const bar = text.lastIndexOf('|');
  if (bar >= 0) return sensitiveLabel(text.slice(0, bar), text.slice(bar + 1));
  return sensitiveLabel(CONFIDENTIALITY_SYSTEM, text) ?? sensitiveLabel('http://terminology.hl7.org/CodeSystem/v3-ActCode', text);
}

const coding = z.object({ system: z.string().optional(), code: z.string().optional() }).passthrough();
const concept = z.object({ coding: z.array(coding).optional() }).passthrough();
const identifier = z.object({ system: z.string().optional(), value: z.string().optional() }).passthrough();

const fhirConsent = z
  .object({
    resourceType: z.literal('Consent'),
    status: z.string(),
    scope: concept.optional(),
    dateTime: z.string().optional(),
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
        code: z.array(concept).optional(),
        securityLabel: z.array(coding).optional(),
        provision: z.array(z.unknown()).optional(),
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
 * Reads a FHIR R4 Consent resource, such as an IHE PCF basic Consent, into a
 * grant. Required: `status` active, `scope` (when present)
 * `patient-privacy`, `provision.type` permit (this agent records permits;
 * a withdrawal is a revocation), actors naming the recipient hospitals
 * (identifier `urn:hie:agent:<id>` or `Organization/<id>`: PCF's "everyone
 * in the community" is not a recipient the agent can check),
 * `provision.period.end`, one or more `provision.purpose` v3 ActReason codes.
 * Dates are FHIR `dateTime`s, strictly (fhir/datetime.ts). The scope:
 * `provision.class` as FHIR resource types (everything when absent),
 * `provision.code` as the data categories, `provision.securityLabel` as the
 * sensitive labels released. Nested provisions, and `provision.data`,
 * `dataPeriod` and `action` (restrictions the agent does not check), are
 * refused. The patient is
 * `patient.identifier` (`system|value`) or `patient.reference` `Patient/<id>`.
 * Each refusal names the element.
 */
export function grantFromFhirConsent(resource: unknown): ConsentGrant {
  const parsed = fhirConsent.safeParse(resource);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw invalid(`${issue?.path.join('.') || 'resource'}: ${issue?.message ?? 'invalid'}`);
  }
  const c = parsed.data;
  if (c.status !== 'active') throw invalid(`status must be 'active', got '${c.status.slice(0, 32)}'`);
  if (c.scope && !(c.scope.coding ?? []).some((k) => k.system === CONSENT_SCOPE_SYSTEM && k.code === 'patient-privacy'))
    throw invalid(`scope must be ${CONSENT_SCOPE_SYSTEM}#patient-privacy (a privacy consent)`);
  if (c.dateTime !== undefined && !parseFhirDateTime(c.dateTime)) throw badDate('dateTime');
  if ((c.provision.type ?? 'permit') !== 'permit')
    throw invalid("provision.type must be 'permit' (the agent records permits; withdraw a consent by revoking it)");
  if (c.provision.provision && c.provision.provision.length > 0) throw invalid('provision.provision: nested provisions (exceptions) are not supported');
  // Restrictions the agent cannot enforce: ignoring one would release more than the patient agreed to.
  for (const k of UNENFORCED_PROVISION_ELEMENTS)
    if (c.provision[k] !== undefined)
      throw invalid(`provision.${k}: restricting by ${UNENFORCED_WHY[k]} is not supported (the agent would release more than it says)`);
  let patientId: string | undefined;
  if (c.patient.identifier?.system?.startsWith(PATIENT_HMAC_SYSTEM)) {
    // An export names the patient by a keyed hash; hashing it again would make a consent for nobody.
    throw invalid("patient.identifier is a keyed hash (urn:hie:patient-hmac) of an exported consent: name the patient by the hospital's identifier");
  }
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
  for (const p of purposes)
    if (!PURPOSES.includes(p as Purpose)) throw invalid(`provision.purpose: unsupported purpose '${String(p).slice(0, 32)}' (use ${PURPOSES.join(', ')})`);
  const classes = (c.provision.class ?? []).map((k, i) => {
    if ((k.system !== undefined && k.system !== RESOURCE_TYPE_SYSTEM) || typeof k.code !== 'string' || !SCOPE_PATTERN.test(k.code))
      throw invalid(`provision.class[${i}] must be a FHIR resource type (system ${RESOURCE_TYPE_SYSTEM}); name data categories in provision.code`);
    return k.code;
  });
  const categories = (c.provision.code ?? []).flatMap((k, i) => {
    const codes = (k.coding ?? []).map((x) => `${x.system ?? ''}|${x.code ?? ''}`);
    if (codes.length === 0 || !codes.every((x) => CODING_PATTERN.test(x))) throw invalid(`provision.code[${i}] needs codings with a system (a URI) and a code`);
    return codes;
  });
  const labels = (c.provision.securityLabel ?? []).flatMap((k, i) => {
    if (k.system === CONFIDENTIALITY_SYSTEM && NOT_SENSITIVE_CONFIDENTIALITY.includes(k.code ?? '')) return [];
    const label = sensitiveLabel(k.system, k.code);
    if (!label)
      throw invalid(`provision.securityLabel[${i}] is not a sensitivity label the agent knows (v3-Confidentiality R or V, or a v3-ActCode sensitivity code)`);
    return [label];
  });
  return {
    patientId,
    grantees,
    purposes: [...new Set(purposes)] as Purpose[],
    scope: classes.length === 0 ? [ALL_SCOPE] : [...new Set(classes)],
    ...(categories.length > 0 ? { categories: [...new Set(categories)] } : {}),
    ...(labels.length > 0 ? { labels: [...new Set(labels)] } : {}),
    validFrom: from?.toISOString(),
    validUntil: until.toISOString(),
  };
}

/** The PCF profile a recorded consent's export conforms to, if any (see {@link consentToFhir}). */
export function pcfProfileOf(consent: Consent): string | undefined {
  // PCF has no provision.class or provision.code: a consent limited by type or category is a plain R4 Consent.
  if (!consent.scope.includes(ALL_SCOPE) || consent.categories) return undefined;
  if (consent.labels) return consent.labels.every((l) => PCF_ADVANCED_LABELS.includes(l)) ? PCF_PROFILES.advanced : undefined;
  return consent.purposes.every((p) => PCF_BASIC_PURPOSES.includes(p)) ? PCF_PROFILES.basic : PCF_PROFILES.intermediate;
}

const splitCoding = (text: string): { system: string; code: string } => {
  const bar = text.lastIndexOf('|');
  return { system: text.slice(0, bar), code: text.slice(bar + 1) };
};

/**
 * A recorded consent as a FHIR R4 Consent resource, following IHE PCF
 * (`meta.profile` names the PCF profile it conforms to: basic for
 * everything-but-sensitive consents for treatment, payment, operations;
 * intermediate for other purposes; advanced with sensitive labels; none
 * when limited by resource type or category, which PCF cannot express).
 * The patient is named only by keyed hash, as the subject and as the
 * performer (the patient consented); the source is the consent's ledger
 * entry.
 */
export function consentToFhir(consent: Consent, grantor: string): Record<string, unknown> {
  const profile = pcfProfileOf(consent);
  const patient = { identifier: { system: PATIENT_HMAC_SYSTEM, value: consent.patientHash } };
  return {
    resourceType: 'Consent',
    id: consent.id,
    ...(profile ? { meta: { profile: [profile] } } : {}),
    status: consent.revokedAt ? 'inactive' : 'active',
    scope: { coding: [{ system: CONSENT_SCOPE_SYSTEM, code: 'patient-privacy' }] },
    category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0', display: 'Consent' }] }],
    patient: { type: 'Patient', ...patient },
    dateTime: consent.grantedAt,
    performer: [{ type: 'Patient', ...patient }],
    organization: [{ identifier: { system: 'urn:ietf:rfc:3986', value: `${AGENT_URI_PREFIX}${grantor}` } }],
    sourceReference: { identifier: { system: CONSENT_ID_SYSTEM, value: consent.id }, display: `consent.granted in the ledger feed of ${grantor}` },
    policy: [{ uri: HIE_CONSENT_POLICY_URI }],
    provision: {
      type: 'permit',
      period: { start: consent.validFrom, end: consent.revokedAt ?? consent.validUntil },
      actor: consent.grantees.map((grantee) => ({
        role: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'IRCP' }] },
        reference: { identifier: { system: 'urn:ietf:rfc:3986', value: `${AGENT_URI_PREFIX}${grantee}` } },
      })),
      purpose: consent.purposes.map((code) => ({ system: ACT_REASON_SYSTEM, code })),
      ...(consent.scope.includes(ALL_SCOPE) ? {} : { class: consent.scope.map((code) => ({ system: RESOURCE_TYPE_SYSTEM, code })) }),
      ...(consent.categories ? { code: consent.categories.map((c) => ({ coding: [splitCoding(c)] })) } : {}),
      ...(consent.labels ? { securityLabel: consent.labels.map(splitCoding) } : {}),
    },
  };
}
