import { expect } from 'chai';
import { Ledger, type StoredEntry } from '../../../ledger/index.ts';
import { parseAuditQuery, searchAuditEvents, searchConsents, type QueryParams } from '../../../hospital-agent/console/audit-query.ts';
import { LedgerIndex } from '../../../hospital-agent/console/ledger-index.ts';
import { AgentError } from '../../../hospital-agent/errors.ts';
import { settlementStatement } from '../../../hospital-agent/engine/payments.ts';
import { tempDir } from '../../support/tmp.ts';
import { buildStory, makeWorld, patientHmac } from '../../ledger/support.ts';

const CLEAR = 'SYN-000001';
const hash = (id: string): string => {
  if (id === CLEAR) return patientHmac(1);
  if (id === '') throw new TypeError('empty');
  return patientHmac(999);
};

describe('audit search over the ledger index', function () {
  this.timeout(30_000);
  let tmp: { dir: string; cleanup: () => void };
  let ledger: Ledger;
  let index: LedgerIndex;
  let all: StoredEntry[];

  before(async () => {
    tmp = tempDir('hie-console-audit-');
    const world = await makeWorld(tmp.dir);
    const path = await buildStory(world, tmp.dir);
    ledger = await Ledger.open({ path, trust: { caPem: world.caPem } });
    index = new LedgerIndex(ledger, 'alpha');
    all = [];
    for (const feed of ledger.feeds()) for await (const e of ledger.entries(feed)) all.push(e);
  });
  after(async () => {
    await ledger.close();
    tmp.cleanup();
  });

  const search = async (q: QueryParams) => searchAuditEvents(index, ledger, parseAuditQuery(q, hash), '/fhir');
  const subtypes = (b: Awaited<ReturnType<typeof search>>): string[] =>
    b.entry.map((e) => ((e.resource['subtype'] as Array<{ code: string }>)[0] as { code: string }).code);

  it('folds the own feed into exchanges with their outcome and charges', async function () {
    await index.refresh();
    const page = index.searchExchanges({}, 10);
    expect(page.items.map((x) => [x.id, x.status])).to.deep.equal([
      ['exchange-0003', 'failed'],
      ['exchange-0002', 'delivered'],
      ['exchange-0001', 'delivered'],
    ]);
    expect(index.exchange('exchange-0001')?.charges).to.deep.equal([{ kind: 'release', payer: 'bravo', payee: 'alpha', amount: 250, currency: 'EUR' }]);
    expect(index.consent('consent-0001')?.revokedAt).to.be.a('string');
  });

  it('pages through exchanges by keyset with filters, and counts them per day', async function () {
    await index.refresh();
    const ids: string[] = [];
    let after;
    for (let guard = 0; guard < 10; guard++) {
      const page = index.searchExchanges({ direction: 'sent', counterparty: 'bravo' }, 1, after);
      ids.push(...page.items.map((x) => x.id));
      if (!page.next) break;
      after = page.next;
    }
    expect(ids).to.deep.equal(['exchange-0003', 'exchange-0002', 'exchange-0001']);
    expect(index.searchExchanges({ status: 'failed' }, 10).items.map((x) => x.id)).to.deep.equal(['exchange-0003']);
    expect(index.searchExchanges({ patient: patientHmac(2) }, 10).items).to.deep.equal([]);
    expect(index.searchExchanges({ from: '2999-01-01T00:00:00.000Z' }, 10).items).to.deep.equal([]);
    const days = index.perDay(3, new Date());
    expect(days).to.have.length(3);
    expect(days.reduce((n, d) => n + d.sent + d.failed + d.received, 0)).to.equal(3);
    expect(days.reduce((n, d) => n + d.failed, 0)).to.equal(1);
    expect(index.releasesUnder('consent-0001').map((x) => x.id)).to.deep.equal(['exchange-0001', 'exchange-0002', 'exchange-0003']);
  });

  it('pages through every entry newest first with next links, whatever the page size, without repeating one', async function () {
    for (const count of [1, 2, 5]) {
      const seen: string[] = [];
      let q: QueryParams = { _count: String(count) };
      for (let guard = 0; guard < 100; guard++) {
        const b = await search(q);
        expect(b.entry.length).to.be.at.most(count);
        seen.push(...b.entry.map((e) => e.resource['id'] as string));
        const next = b.link.find((l) => l.relation === 'next');
        if (!next) break;
        q = Object.fromEntries(new URL(next.url, 'http://x').searchParams);
      }
      expect(seen).to.have.members(all.map((e) => e.hash));
      expect(new Set(seen).size).to.equal(all.length);
      const times = seen.map((h) => all.find((e) => e.hash === h)?.entry.ts as string);
      expect(times).to.deep.equal([...times].sort().reverse());
    }
  });

  it('finds a patient by the clear id, and its links name the patient only by hash', async function () {
    const b = await search({ patient: CLEAR, _count: '2' });
    expect(JSON.stringify(b)).not.to.include(CLEAR);
    const next = b.link.find((l) => l.relation === 'next')?.url as string;
    expect(next).to.include(`patient.identifier=${encodeURIComponent(`urn:hie:patient-hmac|${patientHmac(1)}`)}`);
    const rest = await search(Object.fromEntries(new URL(next, 'http://x').searchParams));
    expect([...subtypes(b), ...subtypes(rest)].sort()).to.deep.equal(['consent.granted', 'exchange.sent', 'exchange.sent', 'exchange.sent']);
    expect((await search({ patient: 'someone-else' })).entry).to.deep.equal([]);
  });

  it('filters by outcome, subtype, type, agent, entity and date', async function () {
    expect(subtypes(await search({ outcome: '4' }))).to.deep.equal(['exchange.failed']);
    expect(subtypes(await search({ subtype: 'receipt' }))).to.deep.equal(['receipt', 'receipt']);
    expect(subtypes(await search({ type: 'http://dicom.nema.org/resources/ontology/DCM|110106', outcome: '0' }))).to.deep.equal([
      'exchange.sent',
      'exchange.sent',
      'exchange.sent',
    ]);
    const byEntity = await search({ entity: 'exchange-0001' });
    expect(subtypes(byEntity).sort()).to.deep.equal(['exchange.received', 'exchange.sent', 'payment.charged', 'receipt']);
    const bravo = await search({ agent: 'bravo', subtype: 'exchange.received' });
    expect(bravo.entry).to.have.length(2);
    const first = all.map((e) => e.entry.ts).sort()[0] as string;
    expect((await search({ date: `lt${first}` })).entry).to.deep.equal([]);
    expect((await search({ date: [`ge${first}`, 'le2999-12-31'] })).entry).to.have.length(all.length);
    expect((await search({ date: 'eq2001' })).entry).to.deep.equal([]);
  });

  it('computes the settlement as the agent’s settlement statement does, for any period', async function () {
    await index.refresh();
    const bravo = new LedgerIndex(ledger, 'bravo');
    await bravo.refresh();
    const now = Date.now();
    for (const [start, end] of [
      [new Date(now - 86_400_000), new Date(now + 86_400_000)],
      [new Date(now - 3_600_000 * 2.5), new Date(now + 60_000)],
      [new Date(now + 60_000), new Date(now + 120_000)],
    ] as Array<[Date, Date]>) {
      expect(index.settlement(start, end)).to.deep.equal(await settlementStatement(ledger, 'alpha', start, end));
      expect(bravo.settlement(start, end)).to.deep.equal(await settlementStatement(ledger, 'bravo', start, end));
    }
  });

  it('answers the consents of a patient as FHIR Consents, a revoked one inactive', async function () {
    const b = await searchConsents(index, { patient: CLEAR }, hash, '/fhir');
    expect(b.entry.map((e) => [e.resource['id'], e.resource['status']])).to.deep.equal([['consent-0001', 'inactive']]);
    expect(JSON.stringify(b)).not.to.include(CLEAR);
  });

  it('refuses what it cannot honour with ERR_BAD_REQUEST, never echoing the value', function () {
    const code = (q: QueryParams): string => {
      try {
        parseAuditQuery(q, hash);
        return 'accepted';
      } catch (err) {
        expect((err as Error).message).not.to.include('SECRET-VALUE');
        return (err as AgentError).code;
      }
    };
    expect(code({ date: 'xx2026' })).to.equal('ERR_BAD_REQUEST');
    expect(code({ _count: '0' })).to.equal('ERR_BAD_REQUEST');
    expect(code({ _count: '1001' })).to.equal('ERR_BAD_REQUEST');
    expect(code({ subtype: 'SECRET-VALUE' })).to.equal('ERR_BAD_REQUEST');
    expect(code({ address: 'SECRET-VALUE' })).to.equal('ERR_BAD_REQUEST');
    expect(code({ _cursor: 'SECRET-VALUE!' })).to.equal('ERR_BAD_REQUEST');
    expect(code({ patient: '' })).to.equal('ERR_BAD_REQUEST');
    expect(code({ 'patient.identifier': 'urn:x|SECRET-VALUE' })).to.equal('ERR_BAD_REQUEST');
  });
});
