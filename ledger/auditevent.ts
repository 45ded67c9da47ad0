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
  const counterpart = body.to ?? body.from ?? body.peer ?? (body.payer && body.payer !== e.feed ? body.payer : body.payee);
  const agents: unknown[] = [{ who: agentRef(e.feed), requestor: true }];
  if (counterpart && counterpart !== e.feed) agents.push({ who: agentRef(counterpart), requestor: false });
  const entities: unknown[] = [
    { what: { identifier: { system: 'urn:hie:ledger:entry', value: `${e.feed}/${e.seq}` } }, detail: [{ type: 'sha256', valueString: stored.hash }] },
  ];
  if (body.exchange) entities.push({ what: { identifier: { system: 'urn:hie:exchange', value: body.exchange } } });
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
