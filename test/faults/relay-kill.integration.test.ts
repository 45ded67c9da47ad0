import { expect } from 'chai';
import { startNetwork, waitFor, type TestNetwork } from '../support/agents.ts';
import { patternStream } from '../support/data.ts';
import { tempDir } from '../support/tmp.ts';
import { assertLedgers, assertSound, call, grant, relayMetric, settle, spawnRelay, submit, type AgentHandle, type RelayProcess } from './support/harness.ts';
import { bundleFor } from '../support/fhir.ts';

describe('fault injection: the relay process SIGKILLed and restarted on the same port', function () {
  this.timeout(240_000);
  let tmp: ReturnType<typeof tempDir>;
  let net: TestNetwork;
  let relay: RelayProcess;
  let port: number;
  const ids = ['alpha', 'bravo', 'charlie'];
  const handle = (id: string): AgentHandle => ({ id, dataDir: net.configs[id]!.dataDir, port: () => net.agents[id]!.apiPort });

  before(async function () {
    tmp = tempDir();
    net = await startNetwork(tmp.dir, ids, { agentStart: false });
    // The network's in-process relay gives way to a real relay process on the same port.
    port = net.relay.port;
    await net.relay.close(0);
    relay = await spawnRelay(net.fed, tmp.dir, port);
    for (const id of ids) await net.startAgent(id);
    await waitFor(() => ids.every((id) => net.agents[id]!.relay.connected), 20_000, 'agents connected');
  });
  after(async function () {
    await relay?.kill();
    await net?.close();
    tmp.cleanup();
  });

  async function restart(): Promise<void> {
    await relay.kill();
    // The old listening socket can take a moment to be released after SIGKILL.
    for (let attempt = 1; ; attempt += 1) {
      try {
        relay = await spawnRelay(net.fed, tmp.dir, port);
        return;
      } catch (err) {
        if (attempt >= 5) throw err;
        await new Promise((r) => setTimeout(r, 300));
      }
    }
  }

  it('delivers a transfer cut by the kill exactly once, byte-identical', async function () {
    const [a, b] = [handle('alpha'), handle('bravo')];
    const consent = await grant(a, 'bravo', 'SYN-KILL-1');
    const size = 120 * 1024 * 1024;
    const data = patternStream(size, 11);
    // The agent sends while the body uploads: the kill lands while the upload is still running.
    const submitted = submit(a, 'bravo', { consent, patientId: 'SYN-KILL-1', body: data.stream, contentType: 'application/octet-stream', length: size });
    await waitFor(async () => (await relayMetric(relay, 'hie_relay_bytes_in_total')) > 16 * 1024 * 1024, 60_000, 'bytes flowing through the relay');
    await restart();
    const id = await submitted;
    const [done] = await settle(a, [id], 120_000);
    expect(done!.status, JSON.stringify(done)).to.equal('delivered');
    expect(done!.attempts, 'the cut attempt was retried').to.be.greaterThan(1);
    expect(done!.contentSha256).to.equal(data.sha256());
    await assertSound([a, b, handle('charlie')], [{ from: a, ids: [id] }]);
  });

  it('delivers each of 50 small FHIR exchanges in flight exactly once', async function () {
    const [a, b, c] = [handle('alpha'), handle('bravo'), handle('charlie')];
    const ca = await grant(a, 'charlie', 'SYN-BURST-A');
    const cb = await grant(b, 'charlie', 'SYN-BURST-B');
    const completedBefore = await relayMetric(relay, 'hie_relay_transfers_completed_total');
    const [fromA, fromB] = await Promise.all([
      Promise.all(
        Array.from({ length: 25 }, () =>
          submit(a, 'charlie', { consent: ca, patientId: 'SYN-BURST-A', body: bundleFor('SYN-BURST-A'), contentType: 'application/fhir+json' }),
        ),
      ),
      Promise.all(
        Array.from({ length: 25 }, () =>
          submit(b, 'charlie', { consent: cb, patientId: 'SYN-BURST-B', body: bundleFor('SYN-BURST-B'), contentType: 'application/fhir+json' }),
        ),
      ),
    ]);
    // Kill once the burst is moving (small exchanges travel in batch envelopes, so a few transfers carry them
    // all): right after the first transfer went through, most are still queued, on the wire or unanswered.
    await waitFor(async () => (await relayMetric(relay, 'hie_relay_transfers_completed_total')) > completedBefore, 30_000, 'a first transfer');
    const unfinished = async (x: AgentHandle, list: string[]): Promise<number> =>
      (await Promise.all(list.map((id) => call<{ status: string }>(x, `/v1/exchanges/${id}`)))).filter((r) => r.body.status !== 'delivered').length;
    await restart();
    expect((await unfinished(a, fromA)) + (await unfinished(b, fromB)), 'the kill landed while exchanges were in flight').to.be.greaterThan(0);
    await assertSound(
      [a, b, c],
      [
        { from: a, ids: fromA },
        { from: b, ids: fromB },
      ],
    );
    const items = (await call<{ items: Array<{ exchangeId: string }> }>(c, '/v1/inbox')).body.items.map((i) => i.exchangeId);
    for (const id of [...fromA, ...fromB])
      expect(
        items.filter((x) => x === id),
        id,
      ).to.have.length(1);
  });

  it('converges and verifies when the relay dies while ledgers replicate', async function () {
    const [a, b, c] = [handle('alpha'), handle('bravo'), handle('charlie')];
    await net.agents['charlie']!.close();
    delete net.agents['charlie'];
    // Many entries on alpha's and bravo's feeds while charlie is away.
    for (let round = 0; round < 8; round += 1) {
      await Promise.all(Array.from({ length: 10 }, (_, i) => grant(a, 'bravo', `SYN-REPL-A-${round}-${i}`)));
      await Promise.all(Array.from({ length: 10 }, (_, i) => grant(b, 'alpha', `SYN-REPL-B-${round}-${i}`)));
    }
    const headA = (await call<{ feeds: Array<{ feed: string; seq: number }> }>(a, '/v1/ledger/status')).body.feeds.find((f) => f.feed === 'alpha')!.seq;
    await net.startAgent('charlie');
    const seen = async (): Promise<number> =>
      (await call<{ feeds: Array<{ feed: string; seq: number }> }>(c, '/v1/ledger/status')).body.feeds.find((f) => f.feed === 'alpha')?.seq ?? -1;
    const atStart = await seen();
    expect(atStart, 'charlie was behind').to.be.lessThan(headA);
    // Kill while charlie catches up and alpha keeps appending.
    const appending = Promise.all(Array.from({ length: 10 }, (_, i) => grant(a, 'charlie', `SYN-REPL-C-${i}`)));
    await restart();
    await appending;
    await waitFor(() => net.agents['charlie']!.relay.connected, 30_000, 'charlie reconnected');
    await assertLedgers([a, b, c]);
    expect(await seen()).to.be.greaterThanOrEqual(headA + 10);
  });
});
