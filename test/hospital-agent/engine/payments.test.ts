import { expect } from 'chai';
import type { SignedHead } from '../../../ledger/index.ts';
import { monthPeriod, settlementStatement } from '../../../hospital-agent/engine/payments.ts';
import { tempDir } from '../../support/tmp.ts';
import { contentHash, dbPath, makeWorld, patientHmac } from '../../ledger/support.ts';

describe('settlement statements', function () {
  it("say which counterparties' charges they cannot see (feed not replicated), and count them once it is", async function () {
    const tmp = tempDir('hie-settlement-');
    try {
      const world = await makeWorld(tmp.dir, ['alpha', 'bravo']);
      const alpha = await world.open('alpha', dbPath(tmp.dir, 'alpha'));
      const bravo = await world.open('bravo', dbPath(tmp.dir, 'bravo'));
      // alpha asked bravo for records; bravo's answer came, and bravo bills alpha the release fee in its own feed.
      await bravo.append({
        type: 'exchange.sent',
        body: {
          exchange: 'exchange-0001',
          to: 'alpha',
          consent: 'consent-0001',
          patient: patientHmac(1),
          purpose: 'TREAT',
          contentType: 'application/fhir+json',
          bytes: 100,
          hash: contentHash(1),
        },
      });
      await alpha.append({
        type: 'exchange.received',
        body: { exchange: 'exchange-0001', from: 'bravo', contentType: 'application/fhir+json', bytes: 100, hash: contentHash(1) },
      });
      await bravo.append({
        type: 'payment.charged',
        body: { charge: 'charge-0001', exchange: 'exchange-0001', kind: 'release', payer: 'alpha', payee: 'bravo', amount: 250, currency: 'EUR' },
      });
      const { start, end } = monthPeriod(new Date().toISOString().slice(0, 7));

      const blind = await settlementStatement(alpha, 'alpha', start, end);
      expect(blind.lines).to.deep.equal([]);
      expect(blind.unreplicated).to.deep.equal(['bravo']);

      const head = bravo.head() as { seq: number };
      await alpha.ingest('bravo', await bravo.rawRange('bravo', 0, head.seq), (await bravo.signedHead()) as SignedHead);
      const full = await settlementStatement(alpha, 'alpha', start, end);
      expect(full.unreplicated).to.deep.equal([]);
      expect(full.lines).to.deep.equal([{ counterparty: 'bravo', currency: 'EUR', owes: 250, owed: 0, charges: 1 }]);
      // Another month: nothing exchanged, nothing missing.
      const next = monthPeriod(new Date(Date.UTC(2030, 0, 1)).toISOString().slice(0, 7));
      expect((await settlementStatement(alpha, 'alpha', next.start, next.end)).unreplicated).to.deep.equal([]);
      await alpha.close();
      await bravo.close();
    } finally {
      tmp.cleanup();
    }
  });

  it('names as INCOMPLETE only counterparties that may bill this hospital: senders of answers to its requests, not hospitals it only sent to', async function () {
    const tmp = tempDir('hie-settlement-');
    try {
      const world = await makeWorld(tmp.dir, ['alpha', 'bravo', 'charlie', 'delta']);
      const alpha = await world.open('alpha', dbPath(tmp.dir, 'alpha'));
      const received = (exchange: string, from: string) =>
        alpha.append({ type: 'exchange.received', body: { exchange, from, contentType: 'application/fhir+json', bytes: 100, hash: contentHash(2) } });
      // alpha sent to charlie (it logs its own charges of that), received from bravo (an answer to its request) and from delta (unasked).
      await alpha.append({
        type: 'consent.granted',
        body: {
          consent: 'consent-0002',
          patient: patientHmac(2),
          grantees: ['charlie'],
          purposes: ['TREAT'],
          scope: ['*'],
          validFrom: new Date(0).toISOString(),
        },
      });
      await alpha.append({
        type: 'exchange.sent',
        body: {
          exchange: 'exchange-0010',
          to: 'charlie',
          consent: 'consent-0002',
          patient: patientHmac(2),
          purpose: 'TREAT',
          contentType: 'application/fhir+json',
          bytes: 100,
          hash: contentHash(2),
        },
      });
      await received('exchange-0011', 'bravo');
      await received('exchange-0012', 'delta');
      const { start, end } = monthPeriod(new Date().toISOString().slice(0, 7));
      const s = await settlementStatement(alpha, 'alpha', start, end, { billable: async (x) => x === 'exchange-0011' });
      expect(s.unreplicated).to.deep.equal(['bravo']);
      // Without knowing which exchanges answer requests, every sender counts, never a hospital alpha only sent to.
      expect((await settlementStatement(alpha, 'alpha', start, end)).unreplicated).to.deep.equal(['bravo', 'delta']);
      await alpha.close();
    } finally {
      tmp.cleanup();
    }
  });
});
