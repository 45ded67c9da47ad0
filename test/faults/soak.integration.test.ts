import { expect } from 'chai';
import { formatSummary, killSoakNow, runSoak } from '../../scripts/soak/run.ts';

/** The seed of the short soak; a failing run repeats with `npm run soak -- --minutes 0.75 --seed 20261201 --kill-every-ms 2000`. */
const SEED = 20261201;

describe('crash soak (short form of npm run soak)', function () {
  // 45 s of load (a pause of 2 s before each kill, then its down time and restart: 6 to 10 kills), up to three minutes of settling, and the start and stop of eight processes on a shared machine.
  this.timeout(420_000);
  after(function () {
    killSoakNow();
  });

  it('keeps every promise through 45 s of random SIGKILLs (a 2 s pause before each) of relay nodes, agents and NATS', async function () {
    const result = await runSoak({ minutes: 0.75, seed: SEED, killEveryMs: 2000 });
    const summary = formatSummary(result);
    expect(result.violations, summary).to.deep.equal([]);
    expect(
      [...result.kills.values()].reduce((s, n) => s + n, 0),
      'kills happened',
    ).to.be.at.least(4);
    expect(result.book.accepted.size, 'exchanges were accepted').to.be.greaterThan(30);
    expect(result.check.delivered, summary).to.be.greaterThan(0);
  });
});
