import { randomBytes, randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { AgentError, type AgentErrorCode } from '../../../hospital-agent/errors.ts';
import {
  checkConsent,
  consentSchema,
  consentToFhir,
  scopeOf,
  grantFromFhirConsent,
  patientHash,
  type Consent,
  type ReleaseRequest,
} from '../../../hospital-agent/consent/index.ts';

const secret = randomBytes(32);
const now = new Date('2026-11-21T10:00:00Z');

function consent(overrides: Partial<Consent> = {}): Consent {
  return consentSchema.parse({
    id: randomUUID(),
    patientHash: patientHash(secret, 'MRN-0001'),
    grantees: ['severance'],
    purposes: ['TREAT'],
    scope: ['Patient', 'Condition', 'Observation', 'ImagingStudy'],
    validFrom: '2026-11-01T00:00:00.000Z',
    validUntil: '2026-12-31T00:00:00.000Z',
    grantedAt: '2026-11-01T00:00:00.000Z',
    ...overrides,
  });
}

function request(overrides: Partial<ReleaseRequest> = {}): ReleaseRequest {
  return { patientHash: patientHash(secret, 'MRN-0001'), recipient: 'severance', purpose: 'TREAT', scope: ['Patient', 'Observation'], at: now, ...overrides };
}

function expectRefusal(fn: () => void, code: AgentErrorCode): AgentError {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(AgentError);
    expect((err as AgentError).code).to.equal(code);
    expect((err as AgentError).status).to.equal(403);
    expect((err as Error).message).not.to.contain('MRN-0001');
    return err as AgentError;
  }
  throw new Error(`expected ${code}`);
}

describe('consent rules', function () {
  it('permits a release the consent covers', function () {
    expect(() => checkConsent(consent(), request())).not.to.throw();
    expect(() => checkConsent(consent(), request({ scope: ['ImagingStudy'] }))).not.to.throw();
    expect(() => checkConsent(consent({ scope: ['*'] }), request({ scope: ['Binary'] }))).not.to.throw();
    expect(() => checkConsent(consent({ grantees: ['mgh', 'severance'] }), request())).not.to.throw();
  });

  it('refuses without a consent, for another patient, or for another recipient', function () {
    expectRefusal(() => checkConsent(undefined, request()), 'ERR_CONSENT_MISSING');
    expectRefusal(() => checkConsent(consent(), request({ patientHash: patientHash(secret, 'MRN-0002') })), 'ERR_CONSENT_MISSING');
    expectRefusal(() => checkConsent(consent(), request({ recipient: 'mgh' })), 'ERR_CONSENT_MISSING');
  });

  it('refuses after revocation but not before it', function () {
    const revoked = consent({ revokedAt: '2026-11-20T00:00:00.000Z' });
    expectRefusal(() => checkConsent(revoked, request()), 'ERR_CONSENT_REVOKED');
    expect(() => checkConsent(revoked, request({ at: new Date('2026-11-19T00:00:00Z') }))).not.to.throw();
  });

  it('refuses outside the validity period', function () {
    expectRefusal(() => checkConsent(consent(), request({ at: new Date('2027-01-01T00:00:00Z') })), 'ERR_CONSENT_EXPIRED');
    expectRefusal(() => checkConsent(consent(), request({ at: new Date('2026-10-01T00:00:00Z') })), 'ERR_CONSENT_EXPIRED');
  });

  it('refuses a purpose or kind of data outside the scope', function () {
    expectRefusal(() => checkConsent(consent(), request({ purpose: 'HRESCH' })), 'ERR_CONSENT_SCOPE');
    expectRefusal(() => checkConsent(consent(), request({ scope: ['Binary'] })), 'ERR_CONSENT_SCOPE');
    const e = expectRefusal(() => checkConsent(consent(), request({ scope: ['Patient', 'MedicationStatement'] })), 'ERR_CONSENT_SCOPE');
    expect(e.detail).to.deep.include({ outside: { types: ['MedicationStatement'], categories: [], labels: [] } });
  });

  it('derives the scope a payload needs from its content type', function () {
    expect(scopeOf('application/fhir+json; charset=utf-8', ['Observation', 'Patient'])).to.deep.equal(['Observation', 'Patient']);
    expect(scopeOf('application/dicom')).to.deep.equal(['ImagingStudy#']);
    expect(scopeOf('application/pdf')).to.deep.equal(['Binary#']);
  });
});

describe('patient-id hashing', function () {
  it('is keyed: the same id under another secret gives another hash', function () {
    const a = patientHash(secret, 'MRN-0001');
    expect(a).to.match(/^[0-9a-f]{64}$/);
    expect(patientHash(secret, ' MRN-0001 ')).to.equal(a);
    expect(patientHash(randomBytes(32), 'MRN-0001')).to.not.equal(a);
    expect(patientHash(secret, 'MRN-0002')).to.not.equal(a);
  });

  it('refuses a short secret and an empty id', function () {
    expect(() => patientHash(randomBytes(16), 'x')).to.throw(TypeError);
    expect(() => patientHash(secret, '  ')).to.throw(TypeError);
  });
});

describe('FHIR Consent', function () {
  const resource = {
    resourceType: 'Consent',
    status: 'active',
    scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
    category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
    patient: { identifier: { system: 'urn:oid:1.2.410.100', value: 'MRN-0001' } },
    provision: {
      type: 'permit',
      period: { start: '2026-11-01T00:00:00Z', end: '2026-12-31T00:00:00Z' },
      actor: [{ reference: { identifier: { system: 'urn:ietf:rfc:3986', value: 'urn:hie:agent:severance' } } }],
      purpose: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActReason', code: 'TREAT' }],
      class: [
        { system: 'http://hl7.org/fhir/resource-types', code: 'Patient' },
        { system: 'http://hl7.org/fhir/resource-types', code: 'Observation' },
      ],
    },
  };

  it('reads a grant from an R4 Consent', function () {
    const g = grantFromFhirConsent(resource);
    expect(g).to.deep.equal({
      patientId: 'urn:oid:1.2.410.100|MRN-0001',
      grantees: ['severance'],
      purposes: ['TREAT'],
      scope: ['Patient', 'Observation'],
      validFrom: '2026-11-01T00:00:00.000Z',
      validUntil: '2026-12-31T00:00:00.000Z',
    });
  });

  it('refuses resources that do not say enough, naming the problem', function () {
    const cases: Array<[unknown, RegExp]> = [
      [{ ...resource, resourceType: 'Patient' }, /resourceType/],
      [{ ...resource, status: 'draft' }, /status/],
      [{ ...resource, provision: { ...resource.provision, type: 'deny' } }, /permit/],
      [{ ...resource, provision: { ...resource.provision, period: { start: '2026-11-01T00:00:00Z' } } }, /period.end/],
      [{ ...resource, provision: { ...resource.provision, actor: [] } }, /actor/],
      [{ ...resource, provision: { ...resource.provision, purpose: [{ code: 'MARKETING' }] } }, /purpose/],
      [{ ...resource, provision: { ...resource.provision, class: [{ code: 'not a type' }] } }, /resource type/],
      [{ ...resource, patient: {} }, /patient/],
      ['not an object', /resource/],
    ];
    for (const [input, pattern] of cases) {
      try {
        grantFromFhirConsent(input);
        throw new Error('expected a refusal');
      } catch (err) {
        expect((err as AgentError).code, String(pattern)).to.equal('ERR_INVALID_FHIR');
        expect((err as Error).message).to.match(pattern);
      }
    }
  });

  it('exports a recorded consent without the clear patient id', function () {
    const c = consent();
    const out = consentToFhir(c, 'myongji');
    expect(JSON.stringify(out)).not.to.contain('MRN-0001');
    expect(out['resourceType']).to.equal('Consent');
    const back = grantFromFhirConsent({ ...out, patient: { identifier: { value: 'MRN-0001' } } });
    expect(back.grantees).to.deep.equal(['severance']);
    expect(back.scope).to.deep.equal(['Patient', 'Condition', 'Observation', 'ImagingStudy']);
    expect(back.patientId).to.equal('MRN-0001');
    expect(back.purposes).to.deep.equal(['TREAT']);
  });
});
