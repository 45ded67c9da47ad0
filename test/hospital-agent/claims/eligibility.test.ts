import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { checkEligibilityRequest, eligibilityResponse, ELIGIBILITY_OUTCOMES } from '../../../hospital-agent/claims/index.ts';
import { AgentError } from '../../../hospital-agent/errors.ts';
import { validateR4 } from '../../../hospital-agent/fhir/index.ts';

const example = (name: string): Record<string, unknown> =>
  JSON.parse(readFileSync(fileURLToPath(import.meta.resolve(`hl7.fhir.r4.examples/${name}.json`)), 'utf8')) as Record<string, unknown>;
const coverage = example('Coverage-9876B1');

function refusal(f: () => unknown): AgentError {
  try {
    f();
  } catch (err) {
    return err as AgentError;
  }
  throw new Error('not refused');
}

describe('coverage eligibility requests and responses (FHIR R4)', function () {
  it("takes HL7's R4 example requests and keys them on their identifier", function () {
    for (const name of ['CoverageEligibilityRequest-52345', 'CoverageEligibilityRequest-52346']) {
      const checked = checkEligibilityRequest(example(name), coverage);
      expect(checked.identifier).to.match(/^http:\/\/happyvalley\.com\/coverageelegibilityrequest\|5234[56]$/);
      expect(checked.hash).to.match(/^[A-Za-z0-9_-]{43}$/);
    }
  });

  it('refuses what is not a valid request, each with its code', function () {
    const r = example('CoverageEligibilityRequest-52345');
    expect(refusal(() => checkEligibilityRequest({ ...r, resourceType: 'Claim' }, coverage)).code).to.equal('ERR_INVALID_FHIR');
    expect(refusal(() => checkEligibilityRequest(r, { resourceType: 'Patient' })).code).to.equal('ERR_INVALID_FHIR');
    expect(refusal(() => checkEligibilityRequest({ ...r, status: 'finished' }, coverage)).code).to.equal('ERR_FHIR_INVALID');
    const { identifier: _i, ...noIdentifier } = r;
    expect(refusal(() => checkEligibilityRequest(noIdentifier, coverage)).code).to.equal('ERR_CLAIM_INVALID');
    const { insurance: _n, ...noInsurance } = r;
    expect(refusal(() => checkEligibilityRequest(noInsurance, coverage)).code).to.equal('ERR_CLAIM_INVALID');
  });

  it('writes a valid R4 CoverageEligibilityResponse for every outcome, with the coverage in force only for final answers', function () {
    const request = example('CoverageEligibilityRequest-52345');
    for (const outcome of ELIGIBILITY_OUTCOMES) {
      const res = eligibilityResponse({
        id: '3f0c1f7e-8a51-4c55-9d0a-2b7a3f1e6c11',
        request,
        hospital: 'alpha',
        insurer: 'insurer',
        created: new Date('2026-12-02T00:00:00Z'),
        answer: { outcome, ...(outcome === 'complete' ? { inforce: false } : {}) },
      });
      expect(validateR4(res), outcome).to.deep.equal([]);
      expect(res['outcome']).to.equal(outcome);
      const final = outcome === 'complete' || outcome === 'partial';
      expect(res['insurance'], outcome).to.deep.equal(final ? [{ coverage: { reference: 'Coverage/9876B1' }, inforce: outcome !== 'complete' }] : undefined);
    }
  });
});
