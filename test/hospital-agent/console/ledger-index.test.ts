import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import type { Ledger } from '../../../ledger/index.ts';
import { LedgerIndex } from '../../../hospital-agent/console/ledger-index.ts';
import { tempDir } from '../../support/tmp.ts';
import { makeWorld, patientHmac } from '../../ledger/support.ts';

const digest = (c: string): string => c.repeat(64);

describe('LedgerIndex: claims and prescriptions of the own feed', function () {
  this.timeout(30_000);
  let tmp: { dir: string; cleanup: () => void };
  let alpha: Ledger;
  let index: LedgerIndex;
  const paid = randomUUID();
  const open = randomUUID();
  const rx = randomUUID();
  const cancelled = randomUUID();

  before(async () => {
    tmp = tempDir('hie-console-index-');
    const world = await makeWorld(tmp.dir);
    alpha = await world.open('alpha', `${tmp.dir}/alpha-claims`);
    const claim = (id: string, amount: number) => ({
      type: 'claim.submitted' as const,
      body: { claim: id, insurer: 'bravo', consent: 'consent-0001', patient: patientHmac(1), hash: digest('a'), amount, currency: 'USD' },
    });
    const responded = (id: string, outcome: 'queued' | 'complete', amount: number) => ({
      type: 'claim.responded' as const,
      body: { claim: id, hospital: 'alpha', insurer: 'bravo', outcome, hash: digest('b'), amount, currency: 'USD' },
    });
    await alpha.append(claim(paid, 500));
    await alpha.append(claim(open, 700));
    await alpha.append(responded(paid, 'queued', 0));
    await alpha.append(responded(paid, 'complete', 450));
    // A late copy of the queued answer: evidence only, the claim stays complete.
    await alpha.append(responded(paid, 'queued', 0));
    await alpha.append({
      type: 'payment.charged',
      body: { charge: 'charge-claim-0001', exchange: paid, kind: 'claim', payer: 'bravo', payee: 'alpha', amount: 450, currency: 'USD' },
    });
    await alpha.append({ type: 'prescription.issued', body: { prescription: rx, patient: patientHmac(1), hash: digest('c') } });
    await alpha.append({ type: 'prescription.accepted', body: { prescription: rx, pharmacy: 'bravo' } });
    await alpha.append({ type: 'prescription.rejected', body: { prescription: rx, pharmacy: 'bravo' } });
    await alpha.append({ type: 'prescription.issued', body: { prescription: cancelled, patient: patientHmac(2), hash: digest('d') } });
    await alpha.append({ type: 'prescription.cancelled', body: { prescription: cancelled, by: 'patient' } });
    await alpha.append({ type: 'prescription.accepted', body: { prescription: rx, pharmacy: 'charlie' } });
    await alpha.append({ type: 'prescription.completed', body: { prescription: rx, pharmacy: 'charlie', hash: digest('e'), receipt: digest('f') } });
    index = new LedgerIndex(alpha, 'alpha');
    await index.refresh();
  });
  after(async () => {
    await alpha.close();
    tmp.cleanup();
  });

  it('folds a claim to its final answer, which a late queued answer does not undo', function () {
    expect(index.claim(paid)).to.include({ direction: 'outgoing', counterparty: 'bravo', status: 'complete', amount: 500, paid: 450, currency: 'USD' });
    expect(index.claim(paid)?.answeredAt).to.be.a('string');
    expect(index.claim(open)).to.include({ status: 'sent', amount: 700, paid: undefined, answeredAt: undefined });
  });

  it("lists every entry that names a claim, its benefit charge included, and a prescription's transitions", async function () {
    const types = async (refs: Array<{ feed: string; seq: number }>) => Promise.all(refs.map(async (r) => (await alpha.get(r.feed, r.seq))?.entry.type));
    expect(await types(index.entriesOf('claim', paid))).to.deep.equal([
      'claim.submitted',
      'claim.responded',
      'claim.responded',
      'claim.responded',
      'payment.charged',
    ]);
    expect(await types(index.entriesOf('claim', open))).to.deep.equal(['claim.submitted']);
    expect(await types(index.entriesOf('prescription', rx))).to.deep.equal([
      'prescription.issued',
      'prescription.accepted',
      'prescription.rejected',
      'prescription.accepted',
      'prescription.completed',
    ]);
    expect(index.entriesOf('claim', randomUUID())).to.deep.equal([]);
  });

  it('finds the entries of a claim (its benefit charge included) and of a prescription by entity in the audit search', async function () {
    const types = (entity: string) => index.searchEntries({ entity }, 100).items.map((r) => r.type);
    expect(types(paid).sort()).to.deep.equal(['claim.responded', 'claim.responded', 'claim.responded', 'claim.submitted', 'payment.charged']);
    expect(types(rx).sort()).to.deep.equal([
      'prescription.accepted',
      'prescription.accepted',
      'prescription.completed',
      'prescription.issued',
      'prescription.rejected',
    ]);
    expect(types(cancelled).sort()).to.deep.equal(['prescription.cancelled', 'prescription.issued']);
    expect(types(randomUUID())).to.deep.equal([]);
  });

  it('folds a prescription through a rejection to the pharmacy that completed it, and a cancellation with who cancelled', function () {
    const rows = new Map(index.allPrescriptions().map((r) => [r.id, r]));
    expect(rows.get(rx)).to.include({ status: 'completed', pharmacy: 'charlie', transitions: 5 });
    expect(rows.get(cancelled)).to.include({ status: 'cancelled', cancelledBy: 'patient', pharmacy: undefined, transitions: 2 });
  });

  it('pages claims newest first by keyset, each claim once', function () {
    const seen: string[] = [];
    let after;
    for (let guard = 0; guard < 5; guard++) {
      const page = index.searchClaims(() => true, 1, after);
      seen.push(...page.items.map((c) => c.id));
      if (!page.next) break;
      after = page.next;
    }
    expect([...seen].sort()).to.deep.equal([open, paid].sort());
    // Newest first by (submitted, id): two claims of one millisecond are ordered by id.
    const key = (id: string): string => `${index.claim(id)!.ts} ${id}`;
    expect(key(seen[0]!) > key(seen[1]!)).to.equal(true);
    expect(index.searchClaims((c) => c.status === 'sent', 10).items.map((c) => c.id)).to.deep.equal([open]);
  });
});
