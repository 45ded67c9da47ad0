import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { checkClaim, coverageIssues } from '../../../hospital-agent/claims/model.ts';
import { AgentError } from '../../../hospital-agent/errors.ts';

const fixture = (name: string): Record<string, unknown> =>
  JSON.parse(readFileSync(fileURLToPath(new URL(`../../../scripts/fixtures/${name}.json`, import.meta.url)), 'utf8')) as Record<string, unknown>;

describe('coverageIssues (clean Coverages remembered)', function () {
  it('finds a Coverage clean, then again from memory', function () {
    const coverage = fixture('coverage');
    expect(coverageIssues(coverage)).to.deep.equal([]);
    expect(coverageIssues(structuredClone(coverage))).to.deep.equal([]);
  });

  it('validates a Coverage again once its text changed after it was found clean', function () {
    const coverage = fixture('coverage');
    expect(coverageIssues(coverage)).to.deep.equal([]);
    coverage['status'] = 'not-a-status';
    const issues = coverageIssues(coverage);
    expect(issues.length).to.be.greaterThan(0);
    expect(issues[0]?.expression).to.match(/status/);
  });

  it('reports an invalid Coverage every time it comes', function () {
    const bad = { ...fixture('coverage'), status: 'nonsense' };
    expect(coverageIssues(bad)).to.not.deep.equal([]);
    expect(coverageIssues(bad)).to.not.deep.equal([]);
  });

  it('lets checkClaim refuse a Claim whose Coverage changed after an earlier claim came with it clean', function () {
    const claim = fixture('claim');
    const coverage = fixture('coverage');
    expect(checkClaim(claim, coverage).identifier).to.be.a('string');
    let err: unknown;
    try {
      checkClaim(claim, { ...coverage, status: 'nonsense' });
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(AgentError);
    expect((err as AgentError).code).to.equal('ERR_FHIR_INVALID');
  });
});
