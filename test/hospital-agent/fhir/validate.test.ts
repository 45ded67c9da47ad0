import { expect } from 'chai';
import fc from 'fast-check';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AgentError } from '../../../hospital-agent/errors.ts';
import { validateFhirBundle, validateR4, valueSetCodes } from '../../../hospital-agent/fhir/index.ts';
import { checkExamples, checkExamplesInWorker } from '../../support/r4-examples.ts';

// Test data is edited freely at any depth.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = Record<string, any>;
const EXAMPLES = fileURLToPath(new URL('../../fixtures/fhir-r4-examples/', import.meta.url));
const example = (name: string): Json => JSON.parse(readFileSync(join(EXAMPLES, name), 'utf8')) as Json;
const found = (r: Json): Array<[string, string]> => validateR4(r).map((i) => [i.code, i.expression]);

const PATIENT = 'urn:uuid:3f1c8e2a-0000-4000-8000-000000000001';
/** A small collection Bundle about one patient, valid R4. */
function bundle(): Json {
  return {
    resourceType: 'Bundle',
    type: 'collection',
    entry: [
      { fullUrl: PATIENT, resource: { resourceType: 'Patient', id: 'p1', identifier: [{ system: 'urn:oid:1.2.3', value: 'MRN-1' }], birthDate: '1970-01-01' } },
      {
        fullUrl: 'urn:uuid:3f1c8e2a-0000-4000-8000-000000000002',
        resource: {
          resourceType: 'Observation',
          status: 'final',
          code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] },
          subject: { reference: PATIENT },
          effectiveDateTime: '2024-02-29T10:00:00Z',
          valueQuantity: { value: 72, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
        },
      },
    ],
  };
}

describe('validateR4', function () {
  this.timeout(30_000);

  describe("HL7's published R4 examples", function () {
    const files = readdirSync(EXAMPLES).filter((f) => f.endsWith('.json'));

    it('carries a set of examples, resources and Bundles of several types', function () {
      expect(files.length).to.be.at.least(10);
      const types = files.map((f) => example(f)).map((r) => (r['resourceType'] === 'Bundle' ? `Bundle/${r['type']}` : r['resourceType']));
      expect(types).to.include.members(['Bundle/document', 'Bundle/transaction', 'Bundle/searchset', 'Observation', 'Patient']);
    });

    for (const f of readdirSync(EXAMPLES).filter((x) => x.endsWith('.json'))) {
      it(`passes ${f}`, function () {
        expect(validateR4(example(f))).to.deep.equal([]);
      });
    }

    it('fails the glucose Observation without status, at Observation.status', function () {
      const o = example('observation-example-f001-glucose.json');
      delete o['status'];
      expect(found(o)).to.deep.equal([['ERR_FHIR_INVALID', 'Observation.status']]);
    });

    it('fails an impossible date (2013-02-30) and a malformed one, at the concrete choice element', function () {
      const o = example('observation-example-bloodpressure.json');
      o['effectiveDateTime'] = '2013-02-30';
      expect(found(o)).to.deep.equal([['ERR_FHIR_INVALID', 'Observation.effectiveDateTime']]);
      o['effectiveDateTime'] = 'yesterday';
      expect(found(o).map((i) => i[0])).to.deep.equal(['ERR_FHIR_INVALID']);
      expect(found(o)[0]?.[1]).to.match(/^Observation\.effective/);
    });

    it('fails a choice element of a type the element does not allow, and two types of one choice', function () {
      const o = example('observation-example-f001-glucose.json');
      o['valueAttachment'] = o['valueQuantity'];
      delete o['valueQuantity'];
      expect(found(o)).to.deep.equal([['ERR_FHIR_INVALID', 'Observation.valueAttachment']]);
      const two = example('observation-example-f001-glucose.json');
      two['valueString'] = 'high';
      expect(found(two)).to.deep.equal([['ERR_FHIR_INVALID', 'Observation.value']]);
    });

    it('fails an element R4 does not define', function () {
      const p = example('patient-example.json');
      p['favouriteColour'] = 'blue';
      expect(found(p)).to.deep.equal([['ERR_FHIR_INVALID', 'Patient.favouriteColour']]);
    });

    it('fails a reference of the transaction example whose urn:uuid names no entry', function () {
      const b = example('bundle-transaction.json');
      const first = (b['entry'] as Json[])[0]!['resource'];
      first['generalPractitioner'] = [{ reference: 'urn:uuid:3f1c8e2a-0000-4000-8000-0000000000ff' }];
      expect(found(b)).to.deep.equal([['ERR_FHIR_REFERENCE_UNRESOLVED', 'Bundle.entry[0].resource.generalPractitioner[0].reference']]);
      // The same reference to an entry of the Bundle (its second Patient is no Practitioner: the type is checked too).
      first['generalPractitioner'] = [{ reference: (b['entry'] as Json[])[1]!['fullUrl'] }];
      expect(found(b)).to.deep.equal([['ERR_FHIR_INVALID', 'Bundle.entry[0].resource.generalPractitioner[0].reference']]);
    });

    it('fails a code outside a required value set (Patient.gender)', function () {
      const p = example('patient-example.json');
      p['gender'] = 'M';
      expect(found(p)).to.deep.equal([['ERR_FHIR_INVALID', 'Patient.gender']]);
    });

    it('checks a code that carries a primitive extension (_gender) against its value set too', function () {
      const p = example('patient-example.json');
      p['_gender'] = { extension: [{ url: 'http://example.org/fhir/StructureDefinition/note', valueString: 'asked' }] };
      expect(found(p)).to.deep.equal([]);
      p['gender'] = 'M';
      expect(found(p)).to.deep.equal([['ERR_FHIR_INVALID', 'Patient.gender']]);
    });
  });

  describe('what it checks beyond the StructureDefinitions walk', function () {
    it('accepts the small bundle', function () {
      expect(validateR4(bundle())).to.deep.equal([]);
    });

    it('reports each problem once with its FHIRPath, a message with no value, and an IssueType', function () {
      const b = bundle();
      const obs = b['entry'][1].resource;
      delete obs.status;
      obs.subject = { reference: 'urn:uuid:3f1c8e2a-0000-4000-8000-0000000000ff' };
      b['entry'][0].resource.birthDate = '1970-02-30';
      const issues = validateR4(b);
      expect(issues.map((i) => [i.code, i.expression, i.type])).to.deep.equal([
        ['ERR_FHIR_INVALID', 'Bundle.entry[1].resource.status', 'structure'],
        ['ERR_FHIR_INVALID', 'Bundle.entry[0].resource.birthDate', 'value'],
        ['ERR_FHIR_REFERENCE_UNRESOLVED', 'Bundle.entry[1].resource.subject.reference', 'not-found'],
      ]);
      for (const i of issues) expect(i.message).not.to.match(/1970|3f1c8e2a|MRN/);
    });

    it('resolves relative Type/id references to entries, and refuses one to an entry that is not there', function () {
      const b = bundle();
      b['entry'][1].resource.subject = { reference: 'Patient/p1' };
      expect(found(b)).to.deep.equal([]);
      b['entry'][1].resource.subject = { reference: 'Patient/p2' };
      expect(found(b)).to.deep.equal([['ERR_FHIR_REFERENCE_UNRESOLVED', 'Bundle.entry[1].resource.subject.reference']]);
    });

    it('lets a relative reference in an entry with a RESTful fullUrl name a resource of that server', function () {
      const b = bundle();
      b['entry'][1].fullUrl = 'https://ehr.example/fhir/Observation/o1';
      b['entry'][1].resource.id = 'o1';
      b['entry'][1].resource.performer = [{ reference: 'Practitioner/elsewhere' }];
      expect(found(b)).to.deep.equal([]);
    });

    it('refuses a reference to a resource of a type the element does not allow', function () {
      const b = bundle();
      b['entry'].push({ fullUrl: 'urn:uuid:3f1c8e2a-0000-4000-8000-000000000003', resource: { resourceType: 'Medication', id: 'm1' } });
      b['entry'][1].resource.subject = { reference: 'urn:uuid:3f1c8e2a-0000-4000-8000-000000000003' };
      expect(found(b)).to.deep.equal([['ERR_FHIR_INVALID', 'Bundle.entry[1].resource.subject.reference']]);
    });

    it('refuses a #contained reference to nothing', function () {
      const b = bundle();
      b['entry'][1].resource.performer = [{ reference: '#nobody' }];
      expect(found(b)).to.deep.equal([['ERR_FHIR_REFERENCE_UNRESOLVED', 'Bundle.entry[1].resource.performer[0].reference']]);
    });

    it('applies the R4 Bundle.type rules: bdl invariants, required type code, fullUrl syntax and id', function () {
      const batch = bundle();
      batch['type'] = 'batch';
      expect(found(batch)).to.deep.include(['ERR_FHIR_INVALID', 'Bundle']);
      const doc = bundle();
      doc['type'] = 'document';
      expect(validateR4(doc).map((i) => i.message.slice(0, 24))).to.include('Constraint bdl-9 not met');
      doc['identifier'] = { system: 'urn:ietf:rfc:3986', value: 'urn:uuid:3f1c8e2a-0000-4000-8000-000000000009' };
      doc['timestamp'] = '2024-03-01T10:00:00Z';
      expect(validateR4(doc).map((i) => i.message.slice(0, 25))).to.deep.equal(['Constraint bdl-11 not met']);
      const uuid = bundle();
      uuid['entry'][0].fullUrl = 'urn:uuid:not-a-uuid';
      uuid['entry'][1].resource.subject.reference = 'urn:uuid:not-a-uuid';
      expect(found(uuid)).to.deep.equal([['ERR_FHIR_INVALID', 'Bundle.entry[0].fullUrl']]);
      const id = bundle();
      id['entry'][0].fullUrl = 'https://ehr.example/fhir/Patient/p9';
      id['entry'][1].resource.subject.reference = 'https://ehr.example/fhir/Patient/p9';
      expect(found(id)).to.deep.equal([['ERR_FHIR_INVALID', 'Bundle.entry[0].fullUrl']]);
      const dup = bundle();
      dup['entry'][1].fullUrl = PATIENT;
      expect(validateR4(dup).some((i) => i.message.startsWith('Constraint bdl-7'))).to.equal(true);
    });

    it('refuses a malformed resource id, an empty string, a wrong JSON type and an unknown resource type', function () {
      const b = bundle();
      b['entry'][0].resource.id = 'p 1';
      b['entry'][0].resource.gender = '';
      b['entry'][1].resource.valueQuantity.value = '72';
      expect(found(b)).to.deep.equal([
        ['ERR_FHIR_INVALID', 'Bundle.entry[1].resource.valueQuantity.value'],
        ['ERR_FHIR_INVALID', 'Bundle.entry[0].resource.id'],
        ['ERR_FHIR_INVALID', 'Bundle.entry[0].resource.gender'],
      ]);
      const u = bundle();
      u['entry'][1].resource.resourceType = 'Observashun';
      expect(found(u)).to.deep.equal([['ERR_FHIR_INVALID', 'Bundle.entry[1].resource.resourceType']]);
    });

    it('knows the codes of required value sets from the R4 terminology', function () {
      expect([...(valueSetCodes('http://hl7.org/fhir/ValueSet/bundle-type|4.0.1') ?? [])].sort()).to.deep.equal(
        ['batch', 'batch-response', 'collection', 'document', 'history', 'message', 'searchset', 'transaction', 'transaction-response'].sort(),
      );
    });
  });

  it('checks a resource held in a Resource-typed element as its own type, and a resourceType R4 does not define as none', function () {
    const params = (resource: Json): Json => ({ resourceType: 'Parameters', parameter: [{ name: 'x', resource }] });
    const observation = { resourceType: 'Observation', status: 'final', code: { text: 'glucose' } };
    expect(found(params(observation))).to.deep.equal([]);
    expect(found(params({ ...observation, status: 'bogus' }))).to.deep.equal([['ERR_FHIR_INVALID', 'Parameters.parameter[0].resource.status']]);
    for (const resourceType of ['constructor', '__proto__', 'toString'])
      expect(validateR4(params({ resourceType, status: 'bogus' })).length, resourceType).to.be.greaterThan(0);
  });

  it('never throws on arbitrary JSON in a resource: every problem is an issue with a known code', function () {
    const json = fc.jsonValue({ maxDepth: 4 }) as fc.Arbitrary<unknown>;
    fc.assert(
      fc.property(
        fc.constantFrom('Observation', 'Patient', 'Condition', 'Bundle'),
        fc.dictionary(fc.string({ maxLength: 12 }), json, { maxKeys: 6 }),
        (type, fields) => {
          const b = { resourceType: 'Bundle', type: 'collection', entry: [{ resource: { ...fields, resourceType: type } }] };
          for (const i of validateR4(b)) expect(['ERR_FHIR_INVALID', 'ERR_FHIR_REFERENCE_UNRESOLVED']).to.include(i.code);
        },
      ),
      { numRuns: 200 },
    );
  });

  describe('validateFhirBundle', function () {
    it('throws a 422 AgentError with every R4 issue', function () {
      const b = bundle();
      delete b['entry'][1].resource.status;
      b['entry'][1].resource.subject = { reference: 'urn:uuid:3f1c8e2a-0000-4000-8000-0000000000ff' };
      const run = (): unknown => validateFhirBundle(Buffer.from(JSON.stringify(b)));
      expect(run).to.throw(AgentError);
      try {
        run();
      } catch (err) {
        const e = err as AgentError;
        expect([e.code, e.status]).to.deep.equal(['ERR_FHIR_INVALID', 422]);
        expect(e.issues?.map((i) => i.code)).to.deep.equal(['ERR_FHIR_INVALID', 'ERR_FHIR_REFERENCE_UNRESOLVED']);
        expect(e.message).not.to.contain('3f1c8e2a');
      }
    });
  });

  // The whole published set: HL7's FHIR package hl7.fhir.r4.examples 4.0.1 (CC0), a dev dependency.
  const full = process.env['HIE_FHIR_EXAMPLES'] ?? fileURLToPath(new URL('../../../node_modules/hl7.fhir.r4.examples/', import.meta.url));
  // A few published examples break R4 rules (errata) or our stricter exchange rules: named, with why, in known-refusals.json.
  (existsSync(full) ? it : it.skip)('passes every resource of hl7.fhir.r4.examples but the named refusals, which still fail', async function () {
    this.timeout(600_000);
    const known = (
      JSON.parse(readFileSync(fileURLToPath(new URL('../../fixtures/fhir-r4-known-refusals.json', import.meta.url)), 'utf8')) as {
        refused: Record<string, { reason: string }>;
      }
    ).refused;
    const files = readdirSync(full).filter((x) => x.endsWith('.json') && x !== 'package.json' && !x.startsWith('.'));
    // Half of the files on a second core (a worker thread), half here: the same check, in half the time.
    const other = checkExamplesInWorker(
      full,
      files.filter((_, i) => i % 2 === 1),
      known,
    );
    const here = checkExamples(
      full,
      files.filter((_, i) => i % 2 === 0),
      known,
    );
    const there = await other;
    const checked = here.checked + there.checked;
    const failed = [...here.failed, ...there.failed];
    const passedButKnown = [...here.passedButKnown, ...there.passedButKnown];
    expect(checked).to.be.greaterThan(5000);
    expect(failed, 'refused, not in known-refusals.json').to.deep.equal([]);
    expect(passedButKnown, 'listed in known-refusals.json, yet valid').to.deep.equal([]);
  });
});
