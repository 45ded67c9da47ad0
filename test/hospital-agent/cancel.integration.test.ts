import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { grantConsent, startNetwork, waitFor, type TestNetwork } from '../support/agents.ts';
import { tempDir } from '../support/tmp.ts';
import { bundleFor } from '../support/fhir.ts';
import { DEFAULT_VALIDATION_THREADS } from '../../hospital-agent/fhir/validation-pool.ts';

const PATIENT = 'SYN-CANCEL-4410';
const BUNDLE = bundleFor(PATIENT);

interface ExchangeView {
  id: string;
  status: string;
  attempts: number;
  failure?: { code: string };
}

describe('cancelling an exchange (DELETE /v1/exchanges/ID)', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  let net: TestNetwork;
  let consent: string;

  before(async function () {
    tmp = tempDir();
    net = await startNetwork(tmp.dir, ['myongji', 'severance']);
    await waitFor(() => Object.values(net.agents).every((a) => a.relay.connected), 20_000, 'agents connected');
    consent = await grantConsent(net, 'myongji', 'severance', PATIENT);
  });
  after(async function () {
    await net?.close();
    tmp.cleanup();
  });

  async function submit(body: Buffer | string, contentType: string): Promise<string> {
    const res = await net.api('myongji', '/v1/exchanges', {
      method: 'POST',
      headers: { 'content-type': contentType, 'hie-recipient': 'severance', 'hie-patient-id': PATIENT, 'hie-consent-id': consent },
      body,
    });
    expect(res.status, await res.clone().text()).to.equal(202);
    return ((await res.json()) as { id: string }).id;
  }
  const status = async (id: string): Promise<ExchangeView> => (await (await net.api('myongji', `/v1/exchanges/${id}`)).json()) as ExchangeView;
  const cancel = (id: string): Promise<Response> => net.api('myongji', `/v1/exchanges/${id}`, { method: 'DELETE' });
  const inboxIds = async (): Promise<string[]> =>
    ((await (await net.api('severance', '/v1/inbox')).json()) as { items: Array<{ exchangeId: string }> }).items.map((i) => i.exchangeId);
  async function delivered(id: string): Promise<void> {
    await waitFor(async () => (await status(id)).status === 'delivered', 60_000, `exchange ${id} delivered`);
  }

  it('never delivers an exchange cancelled while its recipient was offline, and logs the cancel', async function () {
    await net.agents['severance']!.close();
    delete net.agents['severance'];
    // A small FHIR Bundle (inline, sent in batch envelopes) and a binary (outbox file, single envelope).
    const small = await submit(BUNDLE, 'application/fhir+json');
    const big = await submit(randomBytes(300_000), 'application/octet-stream');
    // Both were tried (released, refused by the relay: no route) and wait for their retry.
    for (const id of [small, big]) await waitFor(async () => (await status(id)).attempts >= 1 && (await status(id)).status === 'queued', 30_000, 'a retry');

    for (const id of [small, big]) {
      const res = await cancel(id);
      expect(res.status, await res.clone().text()).to.equal(200);
      const x = (await res.json()) as ExchangeView;
      expect(x.status).to.equal('failed');
      expect(x.failure?.code).to.equal('ERR_EXCHANGE_CANCELLED');
      // A second cancel is refused with the state.
      const again = await cancel(id);
      expect(again.status).to.equal(409);
      expect(((await again.json()) as { error: { code: string; detail: { status: string } } }).error).to.deep.include({
        code: 'ERR_CONFLICT',
        detail: { status: 'failed', id },
      });
      const entries = await net.agents['myongji']!.ledger.byExchange(id);
      expect(entries.map((e) => e.entry.type)).to.include('exchange.cancelled');
      expect(entries.find((e) => e.entry.type === 'exchange.cancelled')?.entry.body).to.deep.equal({ exchange: id, peer: 'severance' });
    }

    // The recipient comes back; a later exchange goes through, the cancelled ones never arrive.
    await net.startAgent('severance');
    await waitFor(() => net.agents['severance']!.relay.connected, 20_000, 'severance connected');
    const control = await submit(BUNDLE, 'application/fhir+json');
    await delivered(control);
    const inbox = await inboxIds();
    expect(inbox).to.include(control);
    expect(inbox).to.not.include(small);
    expect(inbox).to.not.include(big);
    for (const id of [small, big]) expect((await status(id)).failure?.code).to.equal('ERR_EXCHANGE_CANCELLED');

    const metrics = await (await net.api('myongji', '/metrics')).text();
    expect(metrics).to.match(/hie_agent_exchanges_total\{direction="out",outcome="cancelled"\} 2\b/);
    // FHIR Bundles are validated in the default number of threads, each submission timed.
    expect(metrics).to.match(new RegExp(`^hie_agent_fhir_validation_threads ${DEFAULT_VALIDATION_THREADS}$`, 'm'));
    expect(Number(/^hie_agent_fhir_validation_seconds_count (\d+)$/m.exec(metrics)?.[1])).to.be.at.least(2);
    // The sender's ledger verifies: a cancel answers a release, and no cancelled exchange was delivered.
    const verify = (await (await net.api('myongji', '/v1/ledger/verify?grace=0')).json()) as { ok: boolean; findings: unknown[] };
    expect(verify.findings).to.deep.equal([]);
    expect(verify.ok).to.equal(true);
  });

  it('answers 409 with the state for a delivered exchange and 404 for an unknown one', async function () {
    const id = await submit(BUNDLE, 'application/fhir+json');
    await delivered(id);
    const res = await cancel(id);
    expect(res.status).to.equal(409);
    expect(((await res.json()) as { error: { detail: { status: string } } }).error.detail.status).to.equal('delivered');
    expect((await cancel('00000000-0000-4000-8000-000000000000')).status).to.equal(404);
    expect((await cancel('not an id')).status).to.equal(404);
  });

  it('racing the engine: each exchange is either cancelled and never delivered, or refused and delivered', async function () {
    const ids: Array<{ id: string; cancelled: boolean }> = [];
    for (let i = 0; i < 12; i++) {
      const id = await submit(i % 2 === 0 ? BUNDLE : randomBytes(5_000), i % 2 === 0 ? 'application/fhir+json' : 'application/octet-stream');
      const res = await cancel(id);
      expect([200, 409], await res.clone().text()).to.include(res.status);
      ids.push({ id, cancelled: res.status === 200 });
    }
    for (const { id, cancelled } of ids) {
      if (cancelled) expect((await status(id)).failure?.code).to.equal('ERR_EXCHANGE_CANCELLED');
      else await waitFor(async () => ['delivered', 'failed'].includes((await status(id)).status), 60_000, `exchange ${id} to finish`);
    }
    // Anything still in flight to severance has arrived once a later exchange has (same sender, same relay route).
    const control = await submit(BUNDLE, 'application/fhir+json');
    await delivered(control);
    const inbox = await inboxIds();
    for (const { id, cancelled } of ids) {
      if (cancelled) expect(inbox, `cancelled ${id}`).to.not.include(id);
      else expect((await status(id)).status).to.equal('delivered');
    }
    const verify = (await (await net.api('myongji', '/v1/ledger/verify?grace=0')).json()) as { findings: unknown[] };
    expect(verify.findings).to.deep.equal([]);
  });
});
