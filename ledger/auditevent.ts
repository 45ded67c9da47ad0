import { createHash } from 'node:crypto';
import type { StoredEntry } from './entry.ts';
import type { BodyOf } from './schema.ts';

const DCM = 'http://dicom.nema.org/resources/ontology/DCM';
/** Code system of the ledger's entry types, used as the AuditEvent subtype. */
export const LEDGER_TYPE_SYSTEM = 'urn:hie:ledger:entry-type';

/** A FHIR R4 AuditEvent resource (the subset this exporter writes). */
export type AuditEvent = Record<string, unknown> & { resourceType: 'AuditEvent' };

const TYPES: Record<string, { code: string; display: string; action: string }> = {
  'exchange.sent': { code: '110106', display: 'Export', action: 'R' },
  'exchange.received': { code: '110107', display: 'Import', action: 'C' },
  receipt: { code: '110107', display: 'Import', action: 'E' },
  'exchange.failed': { code: '110106', display: 'Export', action: 'E' },
  'exchange.cancelled': { code: '110106', display: 'Export', action: 'D' },
  'consent.granted': { code: '110137', display: 'User Security Attribute Changed', action: 'C' },
  'consent.revoked': { code: '110137', display: 'User Security Attribute Changed', action: 'D' },
  'payment.charged': { code: '110110', display: 'Patient Record', action: 'E' },
  'payment.settled': { code: '110110', display: 'Patient Record', action: 'E' },
  'key.rotated': { code: '110114', display: 'User Authentication', action: 'U' },
  genesis: { code: '110114', display: 'User Authentication', action: 'C' },
  // E-prescriptions: the prescriber's Task (the record of one prescription), its pharmacy the counterpart.
  'prescription.issued': { code: '110110', display: 'Patient Record', action: 'C' },
  'prescription.accepted': { code: '110110', display: 'Patient Record', action: 'U' },
  'prescription.rejected': { code: '110110', display: 'Patient Record', action: 'U' },
  'prescription.completed': { code: '110110', display: 'Patient Record', action: 'U' },
  'prescription.cancelled': { code: '110110', display: 'Patient Record', action: 'D' },
  'certificate.issued': { code: '110106', display: 'Export', action: 'C' },
  'patient.enrolled': { code: '110114', display: 'User Authentication', action: 'C' },
  'patient.records': { code: '110106', display: 'Export', action: 'R' },
};

const agentRef = (id: string) => ({ identifier: { system: 'urn:hie:agent', value: id } });

/**
 * Maps a ledger entry to a FHIR R4 AuditEvent: the feed's hospital is the
 * observer and requesting agent, the counterparty a second agent, and the
 * exchange, consent, patient HMAC and ledger position are entities. No
 * payload, no patient id in the clear.
 */
export function toAuditEvent(stored: StoredEntry): AuditEvent {
  const e = stored.entry;
  const t = TYPES[e.type] ?? { code: '110110', display: 'Patient Record', action: 'E' };
  const body = e.body as Partial<
    BodyOf<'exchange.sent'> & BodyOf<'exchange.received'> & BodyOf<'exchange.failed'> & BodyOf<'receipt'> & BodyOf<'payment.charged'>
  >;
  const failed = e.type === 'exchange.failed' || (e.type === 'receipt' && body.disposition === 'failed');
  const pharmacy = (e.body as { pharmacy?: string }).pharmacy;
  const counterpart = body.to ?? body.from ?? body.peer ?? pharmacy ?? (body.payer && body.payer !== e.feed ? body.payer : body.payee);
  const agents: unknown[] = [{ who: agentRef(e.feed), requestor: true }];
  if (counterpart && counterpart !== e.feed) agents.push({ who: agentRef(counterpart), requestor: false });
  const entities: unknown[] = [
    { what: { identifier: { system: 'urn:hie:ledger:entry', value: `${e.feed}/${e.seq}` } }, detail: [{ type: 'sha256', valueString: stored.hash }] },
  ];
  if (body.exchange) entities.push({ what: { identifier: { system: 'urn:hie:exchange', value: body.exchange } } });
  const prescription = (e.body as { prescription?: string }).prescription;
  if (prescription) entities.push({ what: { identifier: { system: 'urn:hie:prescription', value: prescription } } });
  const consent = (e.body as { consent?: string }).consent;
  if (consent) entities.push({ what: { identifier: { system: 'urn:hie:consent', value: consent } } });
  const patient = (e.body as { patient?: string }).patient;
  if (patient)
    entities.push({
      what: { identifier: { system: `urn:hie:patient-hmac:${e.feed}`, value: patient } },
      type: { system: 'http://terminology.hl7.org/CodeSystem/audit-entity-type', code: '1', display: 'Person' },
    });
  return {
    resourceType: 'AuditEvent',
    id: stored.hash,
    type: { system: DCM, code: t.code, display: t.display },
    subtype: [{ system: LEDGER_TYPE_SYSTEM, code: e.type }],
    action: t.action,
    recorded: e.ts,
    outcome: failed ? '4' : '0',
    ...(failed && body.reason ? { outcomeDesc: body.reason } : {}),
    agent: agents,
    source: {
      observer: agentRef(e.feed),
      type: [{ system: 'http://terminology.hl7.org/CodeSystem/security-source-type', code: '4', display: 'Application Server' }],
    },
    entity: entities,
  } as AuditEvent;
}

/** Canonical URL of IHE BALP's profile of a consent authorization decision. */
export const BALP_AUTHZ_CONSENT_PROFILE = 'https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.AuthZconsent';
/** IHE BALP's code system of authorization decision subtypes. */
export const BALP_AUTHZ_SUBTYPE_SYSTEM = 'https://profiles.ihe.net/ITI/BALP/CodeSystem/AuthZsubType';

/** A consent decision of a hospital's release gate, as the agent logs it (the patient only as a keyed hash). */
export interface ConsentDecisionInput {
  at: string;
  decision: 'permit' | 'deny';
  stage: 'admit' | 'release';
  consent: string;
  patient: string;
  recipient: string;
  purpose: string;
  exchange?: string;
  code?: string;
  outside?: { types: string[]; categories: string[]; labels: string[] };
}

const ACT_REASON = 'http://terminology.hl7.org/CodeSystem/v3-ActReason';
const concept = (system: string, code: string, display?: string) => ({ coding: [{ system, code, ...(display ? { display } : {}) }] });

/**
 * A consent decision as an IHE BALP AuthZconsent AuditEvent (FHIR R4):
 * type DCM 110113 Security Alert, subtype AuthZ-Consent, action E, outcome
 * 0 (permit) or 8 (deny, with `outcomeDesc` the refusal code and what was
 * out of scope); agents: the client (this hospital's agent, which asked),
 * the user (the recipient hospital, information recipient IRCP, with the
 * purpose of use), the user's organisation (the recipient, PROV) and the
 * authoriser (this hospital's agent, an authorisation server); entities: the
 * patient, named by the keyed hash only (`urn:hie:patient-hmac:<hospital>`:
 * nobody outside the hospital can tell who it is), and the consent (with the
 * exchange and stage as details). No clinical data, no clear patient id.
 */
export function consentDecisionAuditEvent(d: ConsentDecisionInput, hospital: string): AuditEvent {
  const self = agentRef(hospital);
  const recipient = agentRef(d.recipient);
  const outside = d.outside ? [...d.outside.types, ...d.outside.categories, ...d.outside.labels] : [];
  const detail = [
    { type: 'stage', valueString: d.stage },
    ...(d.exchange ? [{ type: 'exchange', valueString: d.exchange }] : []),
    ...(outside.length > 0 ? [{ type: 'outside-scope', valueString: outside.join('; ') }] : []),
  ];
  return {
    resourceType: 'AuditEvent',
    id: createHash('sha256')
      .update(JSON.stringify([hospital, d]))
      .digest('hex'),
    meta: { profile: [BALP_AUTHZ_CONSENT_PROFILE] },
    type: { system: DCM, code: '110113', display: 'Security Alert' },
    subtype: [{ system: BALP_AUTHZ_SUBTYPE_SYSTEM, code: 'AuthZ-Consent', display: 'Authorization Decision using Roles and Consent' }],
    action: 'E',
    recorded: d.at,
    outcome: d.decision === 'permit' ? '0' : '8',
    ...(d.decision === 'deny' ? { outcomeDesc: `${d.code ?? 'denied'}${outside.length > 0 ? `: outside the consent: ${outside.join('; ')}` : ''}` } : {}),
    purposeOfEvent: [concept(ACT_REASON, d.purpose)],
    agent: [
      {
        type: concept(DCM, '110150', 'Application'),
        who: self,
        requestor: false,
        network: { address: `urn:hie:agent:${hospital}`, type: '5' },
      },
      {
        type: concept('http://terminology.hl7.org/CodeSystem/v3-ParticipationType', 'IRCP', 'information recipient'),
        who: recipient,
        requestor: true,
        purposeOfUse: [concept(ACT_REASON, d.purpose)],
      },
      { type: concept('http://terminology.hl7.org/CodeSystem/v3-RoleClass', 'PROV', 'healthcare provider'), who: recipient, requestor: false },
      { type: concept('http://terminology.hl7.org/CodeSystem/extra-security-role-type', 'authserver', 'authorization server'), who: self, requestor: false },
    ],
    source: {
      site: hospital,
      observer: self,
      type: [{ system: 'http://terminology.hl7.org/CodeSystem/security-source-type', code: '6', display: 'Security Server' }],
    },
    entity: [
      {
        what: { type: 'Patient', identifier: { system: `urn:hie:patient-hmac:${hospital}`, value: d.patient } },
        type: { system: 'http://terminology.hl7.org/CodeSystem/audit-entity-type', code: '1', display: 'Person' },
        role: { system: 'http://terminology.hl7.org/CodeSystem/object-role', code: '1', display: 'Patient' },
      },
      {
        what: { type: 'Consent', identifier: { system: 'urn:hie:consent', value: d.consent } },
        type: { system: 'http://hl7.org/fhir/resource-types', code: 'Consent', display: 'Consent' },
        detail,
      },
    ],
  } as AuditEvent;
}
