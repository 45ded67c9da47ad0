import { expect } from 'chai';
import { join } from 'node:path';
import { StateDb } from '../../../hospital-agent/store/state-db.ts';
import { ConsentDecisions } from '../../../hospital-agent/store/consent-decisions.ts';
import { tempDir } from '../../support/tmp.ts';

describe('ConsentDecisions', function () {
  it('keeps the newest max decisions on disk, oldest dropped first, across a reopen', async function () {
    const tmp = tempDir();
    try {
      const decision = (i: number) => ({
        at: `2026-11-21T10:00:0${i}.000Z`,
        decision: i % 2 === 0 ? ('permit' as const) : ('deny' as const),
        stage: 'release' as const,
        consent: 'consent-0001',
        patient: 'a'.repeat(64),
        recipient: 'severance',
        purpose: 'TREAT',
      });
      let db = new StateDb(join(tmp.dir, 'state'));
      await db.open();
      let log = new ConsentDecisions(db, 3);
      for (let i = 0; i < 5; i += 1) log.record(decision(i));
      expect((await log.list()).map((d) => d.at)).to.deep.equal([2, 3, 4].map((i) => decision(i).at));
      await db.close();
      db = new StateDb(join(tmp.dir, 'state'));
      await db.open();
      log = new ConsentDecisions(db, 3);
      log.record(decision(5));
      expect((await log.list()).map((d) => d.at)).to.deep.equal([3, 4, 5].map((i) => decision(i).at));
      expect((await log.list({ since: decision(4).at })).map((d) => d.at)).to.deep.equal([4, 5].map((i) => decision(i).at));
      // Decisions recorded while a write is under way go in the next one, none lost and in order.
      log.record(decision(6));
      await new Promise((resolve) => setImmediate(resolve));
      log.record(decision(7));
      log.record(decision(8));
      expect((await log.list()).map((d) => d.at)).to.deep.equal([6, 7, 8].map((i) => decision(i).at));
      await db.close();
    } finally {
      tmp.cleanup();
    }
  });
});
