import { randomBytes, randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { AgentError, type AgentErrorCode } from '../../../hospital-agent/errors.ts';
import { checkConsent, consentSchema, patientHash, scopeOf, type Consent, type ReleaseRequest } from '../../../hospital-agent/consent/index.ts';
import { bundleKinds, ACT_CODE_SYSTEM, CONFIDENTIALITY_SYSTEM } from '../../../hospital-agent/fhir/labels.ts';
import { scopeRefusalAsOutcome } from '../../../hospital-agent/consent/outcome.ts';
import { narrowNeeds, outsideScope } from '../../../hospital-agent/consent/scope.ts';
import { FIXTURE_BUNDLE } from '../../support/fhir.ts';

const secret = randomBytes(32);
const now = new Date('2026-11-21T10:00:00Z');
const PSY = `${ACT_CODE_SYSTEM}|PSY`;
const HIV = `${ACT_CODE_SYSTEM}|HIV`;
const RESTRICTED = `${CONFIDENTIALITY_SYSTEM}|R`;
const LAB = 'http://terminology.hl7.org/CodeSystem/observation-category|laboratory';
const VITALS = 'http://terminology.hl7.org/CodeSystem/observation-category|vital-signs';

type Bundle = { resourceType: string; type: string; meta?: unknown; entry: Array<{ resource: Record<string, unknown> }> };
const fixture = (): Bundle => JSON.parse(FIXTURE_BUNDLE.toString('utf8')) as Bundle;
const observation = (b: Bundle): Record<string, unknown> => b.entry.find((e) => e.resource['resourceType'] === 'Observation')!.resource;
const label = (system: string, code: string) => ({ system, code });

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

function release(bundle: Bundle): ReleaseRequest {
  return {
    patientHash: patientHash(secret, 'MRN-0001'),
    recipient: 'severance',
    purpose: 'TREAT',
    scope: scopeOf('application/fhir+json', bundleKinds(bundle)),
    at: now,
  };
}

function refusal(fn: () => void, code: AgentErrorCode): AgentError {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(AgentError);
    expect((err as AgentError).code).to.equal(code);
    expect((err as AgentError).status).to.equal(403);
    return err as AgentError;
  }
  throw new Error(`expected ${code}`);
}

describe('bundleKinds', function () {
  it('reads each resource kind with its categorising codes, and sensitive labels only', function () {
    const b = fixture();
    observation(b)['meta'] = { security: [label(ACT_CODE_SYSTEM, 'PSY'), label(CONFIDENTIALITY_SYSTEM, 'N'), label('http://example.org', 'PSY')] };
    b.meta = { security: [label(CONFIDENTIALITY_SYSTEM, 'R')] };
    const kinds = bundleKinds(b);
    expect(kinds.labels).to.deep.equal([RESTRICTED, PSY].sort());
    expect(kinds.resources.find((k) => k.type === 'Observation')?.codes).to.deep.equal(['http://loinc.org|85354-9']);
    expect(kinds.resources.find((k) => k.type === 'Patient')?.codes).to.deep.equal([]);
  });

  it('finds a label on a contained resource', function () {
    const b = fixture();
    observation(b)['contained'] = [{ resourceType: 'Specimen', id: 's', meta: { security: [label(ACT_CODE_SYSTEM, 'HIV')] } }];
    expect(bundleKinds(b).labels).to.deep.equal([HIV]);
  });
});

describe('bundleKinds in nested Bundles', function () {
  it('reads the resources and labels of a Bundle inside an entry, and counts one nested too deep as restricted', function () {
    const inner = fixture();
    observation(inner)['meta'] = { security: [label(ACT_CODE_SYSTEM, 'HIV')] };
    const outer = { resourceType: 'Bundle', type: 'collection', entry: [{ resource: inner as unknown as Record<string, unknown> }] };
    const kinds = bundleKinds(outer);
    expect(kinds.labels).to.deep.equal([HIV]);
    expect(kinds.resources.map((k) => k.type)).to.include.members(['Bundle', 'Observation', 'Patient']);
    let deep: Record<string, unknown> = { resourceType: 'Bundle', type: 'collection', entry: [] };
    for (let i = 0; i < 6; i += 1) deep = { resourceType: 'Bundle', type: 'collection', entry: [{ resource: deep }] };
    expect(bundleKinds(deep).labels).to.deep.equal([RESTRICTED]);
  });
});

describe('consent scope by kind of data', function () {
  it("refuses a resource labelled PSY under a '*' consent, naming the label, with ERR_CONSENT_SENSITIVE", function () {
    const b = fixture();
    observation(b)['meta'] = { security: [label(ACT_CODE_SYSTEM, 'PSY')] };
    const e = refusal(() => checkConsent(consent(), release(b)), 'ERR_CONSENT_SENSITIVE');
    expect(e.message).to.contain(PSY);
    expect(e.message).not.to.contain('MRN-0001');
    expect((e.detail?.['outside'] as { labels: string[] }).labels).to.deep.equal([PSY]);
  });

  it("refuses a resource of confidentiality R under a '*' consent", function () {
    const b = fixture();
    observation(b)['meta'] = { security: [label(CONFIDENTIALITY_SYSTEM, 'R')] };
    refusal(() => checkConsent(consent(), release(b)), 'ERR_CONSENT_SENSITIVE');
  });

  it('permits the same under a consent naming the label; a second label must be named too', function () {
    const b = fixture();
    observation(b)['meta'] = { security: [label(ACT_CODE_SYSTEM, 'PSY'), label(CONFIDENTIALITY_SYSTEM, 'R')] };
    expect(() => checkConsent(consent({ labels: [PSY, RESTRICTED] }), release(b))).not.to.throw();
    const e = refusal(() => checkConsent(consent({ labels: [PSY] }), release(b)), 'ERR_CONSENT_SENSITIVE');
    expect(e.message).to.contain(RESTRICTED).and.not.contain(`${PSY},`);
  });

  it('a category-scoped consent releases that category and refuses another, naming it', function () {
    const b = fixture();
    b.entry = b.entry.filter((e) => ['Patient', 'Observation'].includes(e.resource['resourceType'] as string));
    observation(b)['category'] = [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }];
    expect(() => checkConsent(consent({ categories: [VITALS] }), release(b))).not.to.throw();
    const e = refusal(() => checkConsent(consent({ categories: [LAB] }), release(b)), 'ERR_CONSENT_SCOPE');
    expect(e.message).to.contain('Observation').and.contain(VITALS);
    // The Patient (the consent's subject) carries no category and is released with the categorised data.
    expect((e.detail?.['outside'] as { categories: string[] }).categories).to.have.length(1);
  });

  it('a category-scoped consent refuses an uncategorised resource and a DICOM study', function () {
    const b = fixture();
    const e = refusal(() => checkConsent(consent({ categories: ['http://loinc.org|85354-9'] }), release(b)), 'ERR_CONSENT_SCOPE');
    expect(e.message).to.contain('Condition');
    refusal(() => checkConsent(consent({ categories: [LAB] }), { ...release(b), scope: scopeOf('application/dicom') }), 'ERR_CONSENT_SCOPE');
  });

  it('keeps an old type list meaning what it meant, minus sensitive data', function () {
    const b = fixture();
    const types = ['Patient', 'Condition', 'Observation', 'MedicationStatement', 'AllergyIntolerance'];
    expect(() => checkConsent(consent({ scope: types }), release(b))).not.to.throw();
    const e = refusal(() => checkConsent(consent({ scope: types.slice(0, 3) }), release(b)), 'ERR_CONSENT_SCOPE');
    expect(e.message).to.contain('resource type MedicationStatement, AllergyIntolerance');
    // Exchanges recorded before categories existed carry bare types: checked by type only.
    expect(() => checkConsent(consent({ scope: types, categories: [LAB] }), { ...release(b), scope: types })).not.to.throw();
    observation(b)['meta'] = { security: [label(ACT_CODE_SYSTEM, 'ETH')] };
    refusal(() => checkConsent(consent({ scope: types }), release(b)), 'ERR_CONSENT_SENSITIVE');
  });

  it('turns a FHIR scope refusal into one OperationOutcome issue per item out of scope', function () {
    const b = fixture();
    observation(b)['meta'] = { security: [label(ACT_CODE_SYSTEM, 'PSY')] };
    let err: unknown;
    try {
      checkConsent(consent(), release(b));
    } catch (e) {
      err = scopeRefusalAsOutcome(e);
    }
    expect((err as AgentError).issues).to.deep.equal([
      { code: 'ERR_CONSENT_SENSITIVE', expression: 'Bundle.entry.resource.meta.security', message: `sensitive label ${PSY} is not named by the consent` },
    ]);
  });

  it('narrows what a release keeps to what its consent names, and re-checks alike', function () {
    const b = fixture();
    b.entry = b.entry.filter((e) => e.resource['resourceType'] === 'Patient');
    for (let i = 0; i < 500; i += 1)
      b.entry.push({
        resource: {
          resourceType: 'Observation',
          category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'laboratory' }] }],
          code: { coding: [{ system: 'http://loinc.org', code: `${1000 + i}-0` }] },
          meta: i === 7 ? { security: [label(ACT_CODE_SYSTEM, 'PSY')] } : undefined,
        },
      });
    const needs = release(b).scope as string[];
    expect(needs.length).to.be.greaterThan(500);
    for (const terms of [consent({ categories: [LAB], labels: [PSY] }), consent({ labels: [PSY] }), consent({ scope: ['Patient'] })]) {
      const kept = narrowNeeds(needs, terms);
      expect(kept.length, JSON.stringify(terms.categories)).to.be.at.most(3);
      expect(outsideScope(terms, kept)).to.deep.equal(outsideScope(terms, needs));
    }
  });
});
