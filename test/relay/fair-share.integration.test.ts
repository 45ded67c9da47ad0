import { once } from 'node:events';
import { pipeline } from 'node:stream/promises';
import { expect } from 'chai';
import type { WebSocket } from 'ws';
import type { RunningRelay } from '../../relay/index.ts';
import {
  decodeFrame,
  encodeOpen,
  TransferAbortedError,
  type Frame,
  type InboundTransfer,
  type OutboundTransfer,
  type RelayClient,
} from '../../relay/protocol/index.ts';
import { makeFederation, type TestFederation } from '../support/federation.ts';
import { tempDir } from '../support/tmp.ts';
import { startCluster, type TestCluster } from './cluster-helpers.ts';
import { admin, connectAgent, hashOf, patternStream, rawAgent, startTestRelay, until } from './helpers.ts';

const MiB = 1024 * 1024;

/** Opens `n` transfers from `client` to `to` and never writes to them; each settles with its abort error. */
function holdOpen(client: RelayClient, to: string, n: number): Array<{ out: OutboundTransfer; failed: Promise<TransferAbortedError> }> {
  return Array.from({ length: n }, () => {
    const out = client.openTransfer(to);
    out.on('error', () => {});
    const failed = out.usage.then(
      () => {
        throw new Error('an idle transfer completed');
      },
      (err: unknown) => err as TransferAbortedError,
    );
    return { out, failed };
  });
}

/** Every inbound transfer `client` receives, read to the end (or to its abort). */
function collectInbound(client: RelayClient): { from: (id: string) => InboundTransfer[]; errors: Map<InboundTransfer, Error> } {
  const all: InboundTransfer[] = [];
  const errors = new Map<InboundTransfer, Error>();
  client.on('transfer', (t: InboundTransfer) => {
    all.push(t);
    t.on('error', (err) => errors.set(t, err));
    // The legitimate sender's transfer is read by the test itself.
    if (t.from !== 'alpha') t.resume();
  });
  return { from: (id) => all.filter((t) => t.from === id), errors };
}

describe('fair share and idle deadline: one member cannot stall a hospital', function () {
  this.timeout(60_000);
  let tmp: ReturnType<typeof tempDir>;
  let fed: TestFederation;

  before(function () {
    tmp = tempDir();
    fed = makeFederation(tmp.dir, ['alpha', 'bravo', 'mallory', 'oldie']);
  });

  after(function () {
    tmp?.cleanup();
  });

  describe('at the relay', function () {
    let relay: RunningRelay;
    let alpha: RelayClient;
    let bravo: RelayClient;
    let mallory: RelayClient;

    before(async function () {
      relay = await startTestRelay(fed, { limits: { maxTransfersPerSender: 8, transferIdleMs: 2500 } });
      alpha = await connectAgent(fed, relay, 'alpha');
      // The victim's own idle deadline is off here: the relay alone must free its slots.
      bravo = await connectAgent(fed, relay, 'bravo', { inboundIdleMs: 0 });
      mallory = await connectAgent(fed, relay, 'mallory');
    });

    after(async function () {
      await Promise.all([alpha?.close(), bravo?.close(), mallory?.close()]);
      await relay?.close(0);
    });

    it("delivers another member's 2 MiB to the victim within 5 s while one member holds 70 opens without data, then aborts the holder's idle transfers", async function () {
      const inbound = collectInbound(bravo);
      const held = holdOpen(mallory, 'bravo', 70);
      // The relay takes the holder's fair share and refuses the rest at once, with a reason.
      await until(() => inbound.from('mallory').length === 8, 5000, "the holder's share delivered to the victim");
      const refused = await Promise.race([
        Promise.all(held.slice(8).map((h) => h.failed)),
        new Promise<never>((_, rej) => setTimeout(() => rej(new Error('refusals late')), 5000)),
      ]);
      for (const err of refused) {
        expect(err).to.be.instanceOf(TransferAbortedError);
        expect(err.reason).to.equal('too-many-transfers');
        expect(err.message).to.match(/sender-share: mallory holds 8 open transfers to bravo \(at most 8 per sender\)/);
      }

      const t0 = Date.now();
      const src = patternStream(2 * MiB);
      const got = new Promise<InboundTransfer>((resolve) => bravo.once('transfer', resolve));
      const out = alpha.openTransfer('bravo');
      const sending = pipeline(src.stream, out);
      const legit = await got;
      expect(legit.from).to.equal('alpha');
      const [received] = await Promise.all([hashOf(legit), sending, out.usage]);
      const elapsed = Date.now() - t0;
      expect(received).to.deep.equal({ hex: src.digest(), bytes: 2 * MiB });
      expect(elapsed, 'legitimate 2 MiB exchange to the victim (ms)').to.be.below(5000);

      // The held transfers move no data and hit the idle deadline; both ends are told why.
      const idle = await Promise.all(held.slice(0, 8).map((h) => h.failed));
      for (const err of idle) {
        expect(err.reason).to.equal('idle-timeout');
        expect(err.message).to.match(/no data for 2500 ms/);
      }
      await until(() => inbound.from('mallory').every((t) => inbound.errors.has(t)), 5000, 'the victim sees the aborts');
      for (const t of inbound.from('mallory')) expect((inbound.errors.get(t) as TransferAbortedError).reason).to.equal('idle-timeout');
      await until(() => relay.metrics.transfersActive.get().then((m) => m.values[0]?.value === 0), 5000, 'no transfer left open');
      const m = await admin(relay, '/metrics');
      expect(m.text).to.match(/hie_relay_idle_timeouts_total 8\b/);
      expect(m.text).to.match(/hie_relay_sender_share_refusals_total 62\b/);
      expect(m.text).to.match(/hie_relay_transfers_aborted_total\{reason="idle-timeout"\} 8\b/);
    });

    it('sends an agent that announced no protocol revision the older write-timeout code instead of idle-timeout', async function () {
      const old: WebSocket = await rawAgent(fed, relay, 'oldie');
      const frames: Frame[] = [];
      old.on('message', (data: Buffer) => frames.push(decodeFrame(data)));
      const got = new Promise<InboundTransfer>((resolve) => bravo.once('transfer', resolve));
      old.send(encodeOpen(1, 'bravo', Buffer.alloc(0)));
      const t = await got;
      t.on('error', () => {});
      await until(() => frames.some((f) => f.kind === 'abort'), 10_000, 'the old agent told of the abort');
      const abort = frames.find((f) => f.kind === 'abort') as Extract<Frame, { kind: 'abort' }>;
      expect(abort).to.include({ id: 1, code: 'write-timeout' });
      expect(abort.reason).to.match(/no data for 2500 ms/);
      // The newer recipient hears the real reason.
      await until(() => t.destroyed, 5000, 'the recipient told of the abort');
      expect(old.readyState).to.equal(old.OPEN);
      old.close();
      await once(old, 'close');
    });
  });

  describe('across relay nodes', function () {
    let cluster: TestCluster;
    let alpha: RelayClient;
    let bravo: RelayClient;
    let mallory: RelayClient;

    before(async function () {
      cluster = await startCluster(fed, tmp.dir, 2, { limits: { maxTransfersPerSender: 4, transferIdleMs: 2500 } });
      const [n1, n2] = cluster.relays as [RunningRelay, RunningRelay];
      alpha = await connectAgent(fed, n1, 'alpha');
      mallory = await connectAgent(fed, n1, 'mallory');
      bravo = await connectAgent(fed, n2, 'bravo', { inboundIdleMs: 0 });
    });

    after(async function () {
      await Promise.all([alpha?.close(), bravo?.close(), mallory?.close()]);
      await cluster?.close();
    });

    it("counts the holder's share on the recipient's node and still delivers another member's 2 MiB within 5 s", async function () {
      const inbound = collectInbound(bravo);
      const held = holdOpen(mallory, 'bravo', 10);
      await until(() => inbound.from('mallory').length === 4, 5000, "the holder's share delivered to the victim");
      for (const err of await Promise.all(held.slice(4).map((h) => h.failed))) {
        expect(err.reason).to.equal('too-many-transfers');
        expect(err.message).to.match(/sender-share: mallory holds 4 open transfers to bravo/);
      }
      const t0 = Date.now();
      const src = patternStream(2 * MiB);
      const got = new Promise<InboundTransfer>((resolve) => bravo.once('transfer', resolve));
      const out = alpha.openTransfer('bravo');
      const sending = pipeline(src.stream, out);
      const [received] = await Promise.all([got.then((t) => hashOf(t)), sending, out.usage]);
      expect(received).to.deep.equal({ hex: src.digest(), bytes: 2 * MiB });
      expect(Date.now() - t0, 'legitimate 2 MiB exchange to the victim across nodes (ms)').to.be.below(5000);
      for (const err of await Promise.all(held.slice(0, 4).map((h) => h.failed))) expect(err.reason).to.equal('idle-timeout');
      await until(() => inbound.from('mallory').every((t) => inbound.errors.has(t)), 5000, 'the victim sees the aborts');
    });
  });

  describe('at the receiving agent', function () {
    let relay: RunningRelay;
    let bravo: RelayClient;
    let mallory: RelayClient;

    before(async function () {
      // The relay's deadline is far away: the recipient's own must free the slot.
      relay = await startTestRelay(fed, { limits: { transferIdleMs: 60_000 } });
      bravo = await connectAgent(fed, relay, 'bravo', { inboundIdleMs: 300 });
      mallory = await connectAgent(fed, relay, 'mallory');
    });

    after(async function () {
      await Promise.all([bravo?.close(), mallory?.close()]);
      await relay?.close(0);
    });

    it('aborts an inbound transfer whose sender holds credit and sends nothing, and the sender sees idle-timeout', async function () {
      const got = new Promise<InboundTransfer>((resolve) => bravo.once('transfer', resolve));
      const [held] = holdOpen(mallory, 'bravo', 1);
      const t = await got;
      const [err] = (await once(t, 'error')) as [TransferAbortedError];
      expect(err).to.be.instanceOf(TransferAbortedError);
      expect(err).to.include({ reason: 'idle-timeout', local: true });
      const seen = await held!.failed;
      expect(seen.reason).to.equal('idle-timeout');
      await until(() => relay.metrics.transfersActive.get().then((m) => m.values[0]?.value === 0), 5000, 'the relay freed the slot');
    });

    it('does not time out a transfer the recipient itself is not reading', async function () {
      const got = new Promise<InboundTransfer>((resolve) => bravo.once('transfer', resolve));
      const out = mallory.openTransfer('bravo');
      out.on('error', () => {});
      // Exactly one window: the sender then has no credit left and waits on the recipient's reader.
      const window = 8 * MiB;
      const writing = pipeline(patternStream(window + MiB).stream, out);
      const t = await got;
      t.pause();
      await until(() => t.bytesReceived === window, 10_000, 'the first window received');
      await new Promise((r) => setTimeout(r, 900));
      expect(t.destroyed).to.equal(false);
      const [received] = await Promise.all([hashOf(t), writing]);
      expect(received.bytes).to.equal(window + MiB);
    });
  });
});
