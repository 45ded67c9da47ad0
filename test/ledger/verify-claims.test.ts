import { expect } from 'chai';
import { levelSource, verifyLedger } from '../../ledger/index.ts';
import { Store } from '../../ledger/store.ts';
import { tempDir } from '../support/tmp.ts';
import { contentHash, dbPath, makeWorld, patientHmac, type LedgerWorld } from './support.ts';

const hash = contentHash(1);

describe('verifyLedger: claim benefits (charge.claim)', function () {
  let tmp: { dir: string; cleanup: () => void };
  let world: LedgerWorld;

  before(async () => {
    tmp = tempDir('hie-ledger-verify-claims-');
    // alpha is the hospital, bravo the insurer, charlie a hospital with no part in the claims.
    world = await makeWorld(tmp.dir);
  });
  after(() => tmp.cleanup());

  it("accepts a benefit the insurer's response pays, and reports one paid by another member, of another amount, or for no claim", async () => {
    const path = dbPath(tmp.dir, 'claims');
    const hospital = await world.open('alpha', path);
    const claim = async (id: string): Promise<void> => {
      await hospital.append({
        type: 'claim.submitted',
        body: { claim: id, insurer: 'bravo', consent: 'consent-0001', patient: patientHmac(1), hash, amount: 13557, currency: 'USD' },
      });
    };
    await claim('claim-ok-0001');
    await claim('claim-bad-payer');
    await claim('claim-bad-amount');
    await hospital.close();
    const insurer = await world.open('bravo', path);
    const respond = async (id: string, amount: number): Promise<void> => {
      await insurer.append({ type: 'claim.received', body: { claim: id, hospital: 'alpha', hash, amount: 13557, currency: 'USD' } });
      await insurer.append({
        type: 'claim.responded',
        body: { claim: id, hospital: 'alpha', insurer: 'bravo', outcome: 'complete', hash, amount, currency: 'USD' },
      });
    };
    await respond('claim-ok-0001', 13557);
    await respond('claim-bad-payer', 13557);
    await respond('claim-bad-amount', 13557);
    const charge = (charge: string, claimId: string, payer: string, amount: number) =>
      insurer.append({ type: 'payment.charged', body: { charge, exchange: claimId, kind: 'claim', payer, payee: 'alpha', amount, currency: 'USD' } });
    await charge('charge-ok-0001', 'claim-ok-0001', 'bravo', 13557); // seq 7
    await charge('charge-payer-01', 'claim-bad-payer', 'charlie', 13557); // seq 8
    await charge('charge-amount-1', 'claim-bad-amount', 'bravo', 99_999); // seq 9
    await charge('charge-ghost-01', 'claim-never-filed', 'bravo', 100); // seq 10
    await insurer.close();
    const store = await Store.open(path);
    try {
      const result = await verifyLedger(levelSource(store), { trust: { caPem: world.caPem } });
      const at = (rule: string): Array<[string | null, number | null]> => result.findings.filter((f) => f.rule === rule).map((f) => [f.feed, f.seq]);
      expect(at('charge.claim')).to.deep.equal([
        ['bravo', 8],
        ['bravo', 9],
      ]);
      expect(at('charge.exchange')).to.deep.equal([['bravo', 10]]);
      expect(result.findings.filter((f) => f.rule !== 'charge.claim' && f.rule !== 'charge.exchange')).to.deep.equal([]);
    } finally {
      await store.close();
    }
  });
});
