import { expect } from 'chai';
import type { EntryType, StoredEntry } from '../../../ledger/index.ts';
import { waitFor, type TestNetwork } from '../../support/agents.ts';
import { claimFor, coverage, grantPaymentConsent, startClaimsNetwork, submitClaim } from '../../support/claims.ts';
import { issuePrescription, medicationDispense, post } from '../../support/pharmacy.ts';
import { tempDir } from '../../support/tmp.ts';
import { haveChromium, openConsoleBrowser, type ConsoleBrowser } from './chromium.ts';
import { COMPLIANCE_TOKEN } from './federation.ts';

const HOSPITAL = 'myongji';
const INSURER = 'insurer';
const PHARMACY = 'pharm';
const CLAIM_PATIENT = 'SYN-CONSOLE-CLAIMS';
const RX_PATIENT = 'SYN-CONSOLE-RX';

/** The cells of every row of the table `selector`, as the browser renders them. */
async function rows(b: ConsoleBrowser, selector: string): Promise<string[][]> {
  return b.page.$$eval(`${selector} tbody tr`, (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.innerText.trim())));
}

/** The `feed/seq` and full hash of every row of the detail page's ledger-entries table. */
async function shownEntries(b: ConsoleBrowser): Promise<Array<{ type: string; ref: string; hash: string }>> {
  return b.page.$$eval('table.ledger-entries tbody tr', (trs) =>
    trs.map((tr) => {
      const td = [...tr.querySelectorAll('td')];
      return { type: td[0]!.innerText.trim(), ref: td[1]!.innerText.trim(), hash: td[4]!.querySelector('code')!.getAttribute('title')! };
    }),
  );
}

describe('compliance console: claims and prescriptions in headless Chromium', function () {
  this.timeout(240_000);
  let tmp: ReturnType<typeof tempDir>;
  let net: TestNetwork;
  let b: ConsoleBrowser;
  const claims: { paid: string; open: string } = { paid: '', open: '' };
  const rx: { done: { id: string; accessCode: string }; ready: { id: string; accessCode: string } } = {
    done: { id: '', accessCode: '' },
    ready: { id: '', accessCode: '' },
  };

  /** Every entry (any feed held at the hospital) that names claim `id` or prescription `id`, as the ledger's own indexes give them. */
  async function ledgerEntries(kind: 'claim' | 'prescription', id: string): Promise<StoredEntry[]> {
    const ledger = net.agents[HOSPITAL]!.ledger;
    const types: EntryType[] =
      kind === 'claim'
        ? ['claim.submitted', 'claim.received', 'claim.responded']
        : ['prescription.issued', 'prescription.accepted', 'prescription.rejected', 'prescription.completed', 'prescription.cancelled'];
    const out: StoredEntry[] = [];
    for (const t of types) out.push(...(await ledger.byType(t)).filter((e) => (e.entry.body as Record<string, unknown>)[kind] === id));
    if (kind === 'claim') out.push(...(await ledger.byExchange(id)).filter((e) => e.entry.type === 'payment.charged'));
    return out;
  }

  before(async function () {
    if (!haveChromium()) this.skip();
    tmp = tempDir('hie-console-claims-');
    // Full replication: the insurer's entries about the claim reach the hospital's ledger, so its console shows both sides.
    ({ net } = await startClaimsNetwork(
      tmp.dir,
      { [HOSPITAL]: 'hospital', [INSURER]: 'insurer', [PHARMACY]: 'pharmacy' },
      { replicationMode: 'full', extraTokens: `officer@compliance:${COMPLIANCE_TOKEN}` },
    ));
    const consent = await grantPaymentConsent(net, HOSPITAL, INSURER, CLAIM_PATIENT);
    for (const [name, value, total] of [
      ['paid', 'CONSOLE-PAID', 135.57],
      // An identifier with markup: the console must show it as text.
      ['open', 'CONSOLE-OPEN<b>x</b>', 50],
    ] as const) {
      const res = await submitClaim(net, HOSPITAL, {
        insurer: INSURER,
        patientId: CLAIM_PATIENT,
        consentId: consent,
        claim: claimFor(value, total),
        coverage: coverage(),
      });
      if (res.status !== 202) throw new Error(`claim ${value} answered ${res.status}: ${await res.text()}`);
      claims[name] = ((await res.json()) as { id: string }).id;
    }
    const status = async (id: string): Promise<string> => ((await (await net.api(HOSPITAL, `/v1/claims/${id}`)).json()) as { status: string }).status;
    for (const id of [claims.paid, claims.open]) await waitFor(async () => (await status(id)) === 'queued', 30_000, `claim ${id} queued`);
    const answered = await net.api(INSURER, `/v1/claims/${claims.paid}/response`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ outcome: 'complete' }),
    });
    if (answered.status !== 200) throw new Error(`adjudication answered ${answered.status}: ${await answered.text()}`);
    await waitFor(async () => (await status(claims.paid)) === 'complete', 30_000, 'the final response at the hospital');

    rx.done = await issuePrescription(net, HOSPITAL, RX_PATIENT);
    rx.ready = await issuePrescription(net, HOSPITAL, RX_PATIENT);
    const token = (await issuePrescription(net, HOSPITAL, RX_PATIENT)).token;
    const accepted = await post(net, PHARMACY, '/v1/dispensing', { token });
    if (accepted.status !== 200) throw new Error(`accept answered ${accepted.status}`);
    // The third one stays in progress at the pharmacy; the first is accepted and dispensed.
    const first = await post(net, PHARMACY, '/v1/dispensing', { prescriber: HOSPITAL, id: rx.done.id, accessCode: rx.done.accessCode });
    if (first.status !== 200) throw new Error(`accept answered ${first.status}`);
    const closed = await post(net, PHARMACY, `/v1/dispensing/${HOSPITAL}/${rx.done.id}/close`, { medicationDispense: medicationDispense(RX_PATIENT) });
    if (closed.status !== 200) throw new Error(`close answered ${closed.status}`);

    // The insurer's side of the paid claim (received, two responses, the benefit) replicated to the hospital.
    await waitFor(
      async () => (await ledgerEntries('claim', claims.paid)).filter((e) => e.entry.feed === INSURER).length === 4,
      45_000,
      "the insurer's entries at the hospital",
    );
    b = await openConsoleBrowser(`http://127.0.0.1:${net.agents[HOSPITAL]!.apiPort}`);
  });
  after(async function () {
    await b?.close();
    await net?.close();
    tmp?.cleanup();
  });

  it('lists the claims with their status and amounts, and filters them by status', async function () {
    await b.signIn(COMPLIANCE_TOKEN);
    await b.submit('nav a[href="/console/claims"]');
    expect(await b.page.$eval('nav a[aria-current=page]', (a) => a.textContent)).to.equal('Claims');
    const byIdentifier = new Map((await rows(b, 'table.claims')).map((r) => [r[1], r]));
    const paid = byIdentifier.get('http://happyvalley.com/claim|CONSOLE-PAID');
    const open = byIdentifier.get('http://happyvalley.com/claim|CONSOLE-OPEN<b>x</b>');
    expect(await b.page.$('table.claims b')).to.equal(null);
    // Submitted, identifier, direction, counterparty, status, claimed, paid, last answered.
    expect(paid?.slice(2, 7)).to.deep.equal(['outgoing', INSURER, 'complete', '135.57 USD', '135.57 USD']);
    expect(open?.slice(2, 7)).to.deep.equal(['outgoing', INSURER, 'queued', '50.00 USD', '0.00 USD']);
    expect(paid?.[7]).to.match(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/);
    expect(await rows(b, 'section[aria-labelledby=claims-summary-h] table')).to.deep.equal([['outgoing', INSURER, '2', '1', '185.57 USD', '135.57 USD']]);
    expect(await b.page.content()).not.to.include(CLAIM_PATIENT);
    await b.check('claims');

    await b.page.select('select[name=status]', 'queued');
    await b.submit('form.filters button[type=submit]');
    expect(b.page.url()).to.match(/\/console\/claims\?status=queued$/);
    expect((await rows(b, 'table.claims')).map((r) => r[1])).to.deep.equal(['http://happyvalley.com/claim|CONSOLE-OPEN<b>x</b>']);
  });

  it("shows one claim's ledger entries of both feeds, each with its seq and hash", async function () {
    await b.go('/console/claims');
    await b.submit(`a[href="/console/claims/${claims.paid}"]`);
    const shown = await shownEntries(b);
    const expected = await ledgerEntries('claim', claims.paid);
    expect(shown.map((e) => `${e.ref} ${e.type} ${e.hash}`).sort()).to.deep.equal(
      expected.map((e) => `${e.entry.feed}/${e.entry.seq} ${e.entry.type} ${e.hash}`).sort(),
    );
    const types = shown.map((e) => `${e.ref.split('/')[0]} ${e.type}`);
    for (const t of [
      `${HOSPITAL} claim.submitted`,
      `${INSURER} claim.received`,
      `${INSURER} claim.responded`,
      `${HOSPITAL} claim.responded`,
      `${INSURER} payment.charged`,
      `${HOSPITAL} payment.charged`,
    ])
      expect(types, t).to.include(t);
    const page = await b.text();
    expect(page).to.include('answered complete, benefit 135.57 USD');
    expect(page).not.to.include(CLAIM_PATIENT);
    await b.check('claim');
  });

  it('lists the prescriptions with their state and pharmacy, and shows the transitions of one', async function () {
    await b.go('/console/prescriptions');
    const byId = new Map((await rows(b, 'table.prescriptions')).map((r) => [r[1], r]));
    expect(byId.size).to.equal(3);
    // Issued, id, state, pharmacy.
    expect(byId.get(rx.done.id)?.slice(2, 4)).to.deep.equal(['completed', PHARMACY]);
    expect(byId.get(rx.ready.id)?.slice(2, 4)).to.deep.equal(['ready', '-']);
    expect([...byId.values()].map((r) => r[2]).sort()).to.deep.equal(['completed', 'in-progress', 'ready']);
    await b.check('prescriptions');

    await b.submit(`a[href="/console/prescriptions/${rx.done.id}"]`);
    const shown = await shownEntries(b);
    const expected = await ledgerEntries('prescription', rx.done.id);
    expect(shown.map((e) => e.type)).to.deep.equal(['prescription.issued', 'prescription.accepted', 'prescription.completed']);
    expect(shown.map((e) => `${e.ref} ${e.hash}`).sort()).to.deep.equal(expected.map((e) => `${e.entry.feed}/${e.entry.seq} ${e.hash}`).sort());
    const html = await b.page.content();
    for (const secret of [rx.done.accessCode, RX_PATIENT, 'Amlodipine']) expect(html).not.to.include(secret);
    expect(await b.text()).to.include(`dispensed by ${PHARMACY}`);
    await b.check('prescription');
  });

  it('records each of these views in the access log, a detail with its patient as the keyed hash only', async function () {
    const claimPatient = ((await net.api(HOSPITAL, `/v1/claims/${claims.paid}`).then((r) => r.json())) as { patientHash: string }).patientHash;
    await b.go('/console/access');
    // When, who, view, patient (hash, in the title), query.
    const log = await b.page.$$eval('main table tbody tr', (trs) =>
      trs.map((tr) => {
        const td = [...tr.querySelectorAll('td')];
        return { view: td[2]!.innerText.trim(), patient: td[3]!.querySelector('code')?.getAttribute('title') ?? '-', query: td[4]!.innerText.trim() };
      }),
    );
    expect(log.find((r) => r.view === 'claim' && r.query === `claim=${claims.paid}`)?.patient).to.equal(claimPatient);
    expect(log.find((r) => r.view === 'prescription' && r.query === `prescription=${rx.done.id}`)?.patient).to.match(/^[0-9a-f]{64}$/);
    expect(log.find((r) => r.view === 'claims')?.patient).to.equal('-');
    expect(log.some((r) => r.view === 'prescriptions')).to.equal(true);
    const html = await b.page.content();
    expect(html).not.to.include(CLAIM_PATIENT);
    expect(html).not.to.include(RX_PATIENT);
  });

  it("shows the pharmacy's console the prescriptions it holds, and their transitions from the prescriber's replicated feed", async function () {
    // Another Chromium: cookies ignore the port, so one profile cannot hold a session at both agents.
    const pharmacy = await openConsoleBrowser(`http://127.0.0.1:${net.agents[PHARMACY]!.apiPort}`);
    try {
      await pharmacy.signIn(COMPLIANCE_TOKEN);
      await pharmacy.go('/console/prescriptions');
      expect(await pharmacy.text()).to.include('No prescription matches.');
      const held = new Map((await rows(pharmacy, 'table.held')).map((r) => [r[1], r]));
      // Accepted, id, prescriber, state here.
      expect(held.get(rx.done.id)?.slice(2, 4)).to.deep.equal([HOSPITAL, 'completed']);
      expect([...held.values()].map((r) => r[3]).sort()).to.deep.equal(['completed', 'in-progress']);
      await pharmacy.check('prescriptions-pharmacy');
      await waitFor(
        async () =>
          (await net.agents[PHARMACY]!.ledger.byType('prescription.completed', HOSPITAL)).some(
            (e) => (e.entry.body as { prescription: string }).prescription === rx.done.id,
          ),
        30_000,
        "the prescriber's completion at the pharmacy",
      );
      await pharmacy.submit(`a[href="/console/prescriptions/${rx.done.id}"]`);
      expect((await shownEntries(pharmacy)).map((e) => e.type)).to.deep.equal(['prescription.issued', 'prescription.accepted', 'prescription.completed']);
      await pharmacy.check('prescription-pharmacy');
    } finally {
      await pharmacy.close();
    }
  });
});
