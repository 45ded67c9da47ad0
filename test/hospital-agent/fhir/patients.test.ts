import { expect } from 'chai';
import { canonicalPatientId, parsePatientId, patientHash } from '../../../hospital-agent/consent/patient.ts';
import { validateFhirBundle } from '../../../hospital-agent/fhir/bundle.ts';
import { bundlePatientIssues } from '../../../hospital-agent/fhir/patients.ts';
import { AgentError } from '../../../hospital-agent/errors.ts';

const MRN = 'urn:oid:1.2.3';
const patient = (id: string, value: string, system = MRN): Record<string, unknown> => ({ resourceType: 'Patient', id, identifier: [{ system, value }] });
const bundle = (...entries: Array<[string | undefined, Record<string, unknown>]>): Record<string, unknown> => ({
  resourceType: 'Bundle',
  type: 'collection',
  entry: entries.map(([fullUrl, resource]) => ({ ...(fullUrl ? { fullUrl } : {}), resource })),
});
const obs = (subject: unknown): Record<string, unknown> => ({ resourceType: 'Observation', status: 'final', code: { text: 'heart rate' }, subject });
const issues = (b: Record<string, unknown>, id = 'MRN-1', system: string | null = MRN): Array<[string, string]> =>
  bundlePatientIssues(b, parsePatientId(id, system ?? undefined)).map((i) => [i.code, i.expression]);

describe('patient identifiers', function () {
  const secret = Buffer.alloc(32, 7);

  it('hashes a bare id and the same id under the hospital system alike, and as before for bare ids', function () {
    expect(canonicalPatientId(' MRN-1 ', MRN)).to.equal('MRN-1');
    expect(canonicalPatientId(`${MRN}|MRN-1`, MRN)).to.equal('MRN-1');
    expect(canonicalPatientId(`${MRN} | MRN-1`, MRN)).to.equal('MRN-1');
    expect(canonicalPatientId('urn:oid:9|MRN-1', MRN)).to.equal('urn:oid:9|MRN-1');
    expect(canonicalPatientId('urn:oid:9|MRN-1')).to.equal('urn:oid:9|MRN-1');
    expect(canonicalPatientId('|MRN-1', MRN)).to.equal('|MRN-1');
    expect(patientHash(secret, `${MRN}|MRN-1`, MRN)).to.equal(patientHash(secret, 'MRN-1'));
    expect(patientHash(secret, 'urn:oid:9|MRN-1', MRN)).to.not.equal(patientHash(secret, 'MRN-1'));
    expect(() => patientHash(secret, `${MRN}|`, MRN)).to.throw(TypeError);
  });
});

describe('bundlePatientIssues', function () {
  it('accepts a bundle about the request patient, references resolved by fullUrl, Patient/<id>, base URL and #contained', function () {
    const b = bundle(
      ['urn:uuid:p1', patient('p1', 'MRN-1')],
      [undefined, obs({ reference: 'urn:uuid:p1' })],
      [undefined, obs({ reference: 'Patient/p1' })],
      [undefined, obs({ reference: 'https://ehr.example/fhir/Patient/p1/_history/2' })],
      [undefined, { ...obs({ reference: '#c' }), contained: [patient('c', 'MRN-1')] }],
      [undefined, obs({ reference: 'Group/g1' })],
      [undefined, obs({ type: 'Patient', identifier: { system: MRN, value: 'MRN-1' } })],
    );
    expect(issues(b)).to.deep.equal([]);
    expect(issues(b, `${MRN}|MRN-1`)).to.deep.equal([]);
  });

  it('matches a bare id under any system only when no hospital system is configured', function () {
    const b = bundle([undefined, patient('p1', 'MRN-1', 'urn:oid:9')]);
    expect(issues(b, 'MRN-1', null)).to.deep.equal([]);
    expect(issues(b, 'MRN-1', MRN)).to.deep.equal([['ERR_FHIR_PATIENT_MISMATCH', 'Bundle.entry[0].resource.identifier']]);
    expect(issues(b, 'urn:oid:9|MRN-1', MRN)).to.deep.equal([]);
  });

  it('names a mismatched, a second and a contained second patient', function () {
    expect(issues(bundle([undefined, patient('p1', 'MRN-2')]))).to.deep.equal([['ERR_FHIR_PATIENT_MISMATCH', 'Bundle.entry[0].resource.identifier']]);
    expect(issues(bundle([undefined, patient('p1', 'MRN-1')], [undefined, patient('p2', 'MRN-2')]))).to.deep.equal([
      ['ERR_FHIR_PATIENT_MULTIPLE', 'Bundle.entry[1].resource.identifier'],
    ]);
    expect(issues(bundle([undefined, patient('p1', 'MRN-1')], [undefined, { ...obs(undefined), contained: [patient('x', 'MRN-2')] }]))).to.deep.equal([
      ['ERR_FHIR_PATIENT_MULTIPLE', 'Bundle.entry[1].resource.contained[0].identifier'],
    ]);
    // Two other patients, neither the request's: the first is a mismatch, the second more than one.
    expect(issues(bundle([undefined, patient('p1', 'MRN-2')], [undefined, patient('p2', 'MRN-3')]))).to.deep.equal([
      ['ERR_FHIR_PATIENT_MISMATCH', 'Bundle.entry[0].resource.identifier'],
      ['ERR_FHIR_PATIENT_MULTIPLE', 'Bundle.entry[1].resource.identifier'],
    ]);
    // A Patient with no identifier cannot be the request's patient.
    expect(issues(bundle([undefined, { resourceType: 'Patient', id: 'p1' }]))).to.deep.equal([
      ['ERR_FHIR_PATIENT_MISMATCH', 'Bundle.entry[0].resource.identifier'],
    ]);
  });

  it('names every reference to a Patient absent from the bundle, and a bundle with no Patient', function () {
    const b = bundle(
      ['urn:uuid:p1', patient('p1', 'MRN-1')],
      [undefined, obs({ reference: 'urn:uuid:gone' })],
      [undefined, { resourceType: 'AllergyIntolerance', patient: { reference: 'Patient/p9' } }],
      [undefined, obs({ reference: '#nothing' })],
      [undefined, obs({ reference: 'not a reference' })],
    );
    expect(issues(b)).to.deep.equal([
      ['ERR_FHIR_PATIENT_UNRESOLVED', 'Bundle.entry[1].resource.subject.reference'],
      ['ERR_FHIR_PATIENT_UNRESOLVED', 'Bundle.entry[2].resource.patient.reference'],
      ['ERR_FHIR_PATIENT_UNRESOLVED', 'Bundle.entry[3].resource.subject.reference'],
      ['ERR_FHIR_PATIENT_UNRESOLVED', 'Bundle.entry[4].resource.subject.reference'],
    ]);
    expect(issues(bundle([undefined, obs(undefined)]))).to.deep.equal([['ERR_FHIR_PATIENT_MISSING', 'Bundle.entry']]);
    expect(issues({ resourceType: 'Bundle', type: 'collection' })).to.deep.equal([['ERR_FHIR_PATIENT_MISSING', 'Bundle.entry']]);
  });

  it('makes validateFhirBundle throw a 422 AgentError carrying every issue, its message naming no value', function () {
    const b = bundle([undefined, patient('p1', 'MRN-2')], [undefined, obs({ reference: 'urn:uuid:gone' })]);
    let err: unknown;
    try {
      validateFhirBundle(Buffer.from(JSON.stringify(b)), { patient: parsePatientId('MRN-1', MRN) });
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(AgentError);
    const e = err as AgentError;
    expect([e.code, e.status, e.issues?.length]).to.deep.equal(['ERR_FHIR_PATIENT_MISMATCH', 422, 2]);
    expect(e.message).not.to.match(/MRN-\d/);
    // Without a patient, R4 validation alone: the unresolved reference is then reported as such.
    expect(() => validateFhirBundle(Buffer.from(JSON.stringify(b))))
      .to.throw(AgentError)
      .with.property('code', 'ERR_FHIR_REFERENCE_UNRESOLVED');
    const ok = bundle([undefined, patient('p1', 'MRN-2')], [undefined, obs({ reference: 'Patient/p1' })]);
    expect(validateFhirBundle(Buffer.from(JSON.stringify(ok))).resourceTypes).to.deep.equal(['Observation', 'Patient']);
  });
});
