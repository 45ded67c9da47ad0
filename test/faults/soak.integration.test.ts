import { expect } from 'chai';
import { formatSummary, killSoakNow, runSoak } from '../../scripts/soak/run.ts';

/** The seed of the short soak; a failing run repeats with `npm run soak -- --minutes 0.5 --seed 20261201 --kill-every-ms 2000`. */
const SEED = 20261201;

describe('crash soak (short form of npm run soak)', function () {
  // Half a minute of load (a kill every 2 s: about as many kills as a minute at one per 3 s), up to three minutes of settling, and the start and stop of eight processes on a shared machine.
  this.timeout(420_000);
  after(function () {
    killSoakNow();
  });

  it('keeps every promise through half a minute of random SIGKILLs (one every 2 s) of relay nodes, agents and NATS', async function () {
    const result = await runSoak({ minutes: 0.5, seed: SEED, killEveryMs: 2000 });
    const summary = formatSummary(result);
    expect(result.violations, summary).to.deep.equal([]);
    expect(
      [...result.kills.values()].reduce((s, n) => s + n, 0),
      'kills happened',
    ).to.be.greaterThan(5);
    expect(result.book.accepted.size, 'exchanges were accepted').to.be.greaterThan(30);
    expect(result.check.delivered, summary).to.be.greaterThan(0);
  });
});
