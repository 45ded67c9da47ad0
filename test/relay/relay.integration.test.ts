import { once } from 'node:events';
import { pipeline } from 'node:stream/promises';
import { expect } from 'chai';
import { CertificateAuthority, loadIdentity } from '../../certs/index.ts';
import type { RunningRelay } from '../../relay/index.ts';
import {
  encodeCredit,
  encodeData,
  encodeOpen,
  InboundTransfer,
  RelayClient,
  RelayError,
  TransferAbortedError,
  verifyUsageStatement,
  type VerifiedUsage,
} from '../../relay/protocol/index.ts';
import { makeFederation, type TestFederation } from '../support/federation.ts';
import { tempDir } from '../support/tmp.ts';
import { admin, connectAgent, hashOf, patternStream, rawAgent, startTestRelay } from './helpers.ts';

const MiB = 1024 * 1024;

describe('relay (integration, real mTLS on loopback)', function () {
  this.timeout(90_000);
  let tmp: ReturnType<typeof tempDir>;
  let fed: TestFederation;
  let relay: RunningRelay;
  let alpha: RelayClient;
  let bravo: RelayClient;
  let completedUsage: VerifiedUsage | undefined;

  before(async function () {
    tmp = tempDir();
    fed = makeFederation(tmp.dir, ['alpha', 'bravo', 'charlie', 'delta', 'echo']);
    relay = await startTestRelay(fed);
    alpha = await connectAgent(fed, relay, 'alpha');
    bravo = await connectAgent(fed, relay, 'bravo');
  });

  after(async function () {
    await alpha?.close();
    await bravo?.close();
    await relay?.close(0);
    tmp?.cleanup();
  });

  function nextInbound(client: RelayClient): Promise<InboundTransfer> {
    return new Promise((resolve) => client.once('transfer', resolve));
  }

  it('names each agent from its certificate and lists it on /v1/agents', async function () {
    expect(alpha.agentId).to.equal('alpha');
    const r = await admin(relay, '/v1/agents');
    expect(JSON.parse(r.text).agents.map((a: { id: string }) => a.id)).to.deep.equal(['alpha', 'bravo']);
  });

  it('carries 300 MB alpha -> bravo intact (SHA-256) and both ends get a verifiable usage statement', async function () {
    const total = 300 * 1000 * 1000;
    const src = patternStream(total);
    const incoming = nextInbound(bravo);
    const out = alpha.openTransfer('bravo', { meta: Buffer.from('{"exchange":"x1"}') });
    const sending = pipeline(src.stream, out);
    const inbound = await incoming;
    expect(inbound.from).to.equal('alpha');
    expect(inbound.meta.toString()).to.equal('{"exchange":"x1"}');
    const [received] = await Promise.all([hashOf(inbound), sending]);
    expect(received.bytes).to.equal(total);
    expect(received.hex).to.equal(src.digest());
    const [u1, u2] = await Promise.all([out.usage, inbound.usage]);
    expect(u1.statement).to.deep.equal(u2.statement);
    expect(u1.statement).to.include({ from: 'alpha', to: 'bravo', bytes: total });
    // tariff: 5 per transfer + 100 per GiB, rounded up
    expect(u1.statement.fee).to.deep.equal({ amount: 5 + Math.ceil((total * 100) / 2 ** 30), currency: 'EUR' });
    expect(verifyUsageStatement(u1.signed, loadIdentity(fed.agents.alpha!).caPem)).to.deep.equal(u1.statement);
    completedUsage = u1;
    const m = await admin(relay, '/metrics');
    expect(m.text).to.match(/hie_relay_transfers_completed_total 1\b/);
    expect(m.text).to.match(new RegExp(`hie_relay_bytes_in_total ${total}\\b`));
  });

  it('rejects a tampered usage statement and one checked against a foreign CA', function () {
    if (!completedUsage) this.skip();
    const caPem = loadIdentity(fed.agents.alpha!).caPem;
    const tampered = structuredClone(completedUsage!.signed);
    tampered.statement.bytes -= 1;
    expect(() => verifyUsageStatement(tampered, caPem)).to.throw(RelayError, /signature does not verify/);
    const cheaper = structuredClone(completedUsage!.signed);
    cheaper.statement.fee.amount = 0;
    expect(() => verifyUsageStatement(cheaper, caPem)).to.throw(RelayError);
    const other = CertificateAuthority.init(`${tmp.dir}/other-ca-usage`, { name: 'Other CA', keyBits: 2048 });
    expect(() => verifyUsageStatement(completedUsage!.signed, other.caCertPem())).to.throw(RelayError, /issued by the federation CA/);
  });

  it('fails a transfer to an offline agent at once with no-route', async function () {
    const t0 = Date.now();
    const out = alpha.openTransfer('delta');
    out.on('error', () => {});
    const err = await out.usage.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(TransferAbortedError);
    expect((err as TransferAbortedError).reason).to.equal('no-route');
    expect(Date.now() - t0).to.be.below(5000);
  });

  it('routes small messages and reports undeliverable ones', async function () {
    const got = once(bravo, 'message');
    alpha.sendMessage('bravo', Buffer.from('receipt:42'));
    const [msg] = (await got) as [{ from: string; body: Buffer }];
    expect(msg.from).to.equal('alpha');
    expect(msg.body.toString()).to.equal('receipt:42');
    const undeliverable = once(alpha, 'undeliverable');
    const id = alpha.sendMessage('delta', Buffer.from('hello?'));
    const [err] = (await undeliverable) as [RelayError & { messageId: number; to: string }];
    expect(err.code).to.equal('ERR_RELAY_UNDELIVERABLE');
    expect(err.messageId).to.equal(id);
    expect(err.to).to.equal('delta');
  });

  it('keeps relay buffering within the window while the receiver stops reading, then completes', async function () {
    const window = 2 * MiB;
    const slow = await connectAgent(fed, relay, 'charlie', { window });
    try {
      const total = 64 * MiB;
      const src = patternStream(total);
      const incoming = nextInbound(slow);
      const out = alpha.openTransfer('charlie');
      const sending = pipeline(src.stream, out);
      const inbound = await incoming;
      // The receiver reads nothing for a while: the sender may only get `window` bytes out.
      let maxBuffered = 0;
      const end = Date.now() + 1500;
      while (Date.now() < end) {
        maxBuffered = Math.max(maxBuffered, relay.bufferedBytes());
        await new Promise((r) => setTimeout(r, 10));
      }
      expect(out.bytesSent).to.be.at.most(window);
      expect(maxBuffered).to.be.at.most(window + 64 * 1024);
      const [received] = await Promise.all([hashOf(inbound), sending]);
      expect(received.hex).to.equal(src.digest());
      const m = await admin(relay, '/metrics');
      expect(m.text).to.match(/hie_relay_credit_stalls_total [1-9]/);
    } finally {
      await slow.close();
    }
  });

  it('closes only a connection that sends a malformed frame; another transfer continues', async function () {
    const total = 40 * MiB;
    const src = patternStream(total);
    const incoming = nextInbound(bravo);
    const out = alpha.openTransfer('bravo');
    const sending = pipeline(src.stream, out);
    const inbound = await incoming;
    // bravo reads nothing until the offender is gone, so the transfer is surely mid-way (40 MB > window).
    const bad = await rawAgent(fed, relay, 'echo');
    const closed = once(bad, 'close');
    bad.send(Buffer.from([1, 99, 0, 0, 0, 1]));
    const [code, reason] = (await closed) as [number, Buffer];
    expect(code).to.equal(1002);
    expect(reason.toString()).to.equal('ERR_PROTOCOL_KIND');
    expect(inbound.bytesReceived).to.be.below(total);
    const [received] = await Promise.all([hashOf(inbound), sending]);
    expect(received.hex).to.equal(src.digest());
    const m = await admin(relay, '/metrics');
    expect(m.text).to.match(/hie_relay_frames_rejected_total\{code="ERR_PROTOCOL_KIND"\} 1/);
  });

  it('closes a sender that exceeds its credit (1008) and tells the recipient', async function () {
    const rogue = await rawAgent(fed, relay, 'echo');
    const incoming = nextInbound(bravo);
    rogue.send(encodeOpen(1, 'bravo'));
    const inbound = await incoming;
    const aborted = new Promise<unknown>((resolve) => inbound.on('error', resolve));
    const closed = once(rogue, 'close');
    // Wait for bravo's initial credit, then send more than it.
    await new Promise<void>((resolve) => rogue.once('message', () => resolve()));
    rogue.send(encodeData(1, Buffer.alloc(1024 * 1024)));
    for (let i = 0; i < 20; i += 1) rogue.send(encodeData(1, Buffer.alloc(1024 * 1024)));
    const [code, reason] = (await closed) as [number, Buffer];
    expect(code).to.equal(1008);
    expect(reason.toString()).to.equal('ERR_PROTOCOL_CREDIT_EXCEEDED');
    const err = await aborted;
    expect(err).to.be.instanceOf(TransferAbortedError);
    expect((err as TransferAbortedError).reason).to.equal('protocol-error');
  });

  it('aborts transfers to a destination that stops draining its socket (write deadline) and bounds relay memory', async function () {
    const small = await startTestRelay(fed, { limits: { highWaterMark: 1 * MiB, writeTimeoutMs: 800 } });
    const sender = await connectAgent(fed, small, 'alpha');
    const stuck = await rawAgent(fed, small, 'delta');
    try {
      stuck.on('message', (buf: Buffer) => {
        // Grant a huge window to the first transfer, then stop reading the socket entirely.
        if (buf[1] === 1) {
          stuck.send(encodeCredit(buf.readUInt32BE(2), 256 * MiB));
          stuck.pause();
        }
      });
      const out = sender.openTransfer('delta');
      out.on('error', () => {});
      const src = patternStream(256 * MiB);
      src.stream.pipe(out);
      let maxBuffered = 0;
      const sampler = setInterval(() => {
        maxBuffered = Math.max(maxBuffered, small.bufferedBytes());
      }, 10);
      const err = await out.usage.then(
        () => undefined,
        (e: unknown) => e,
      );
      clearInterval(sampler);
      src.stream.destroy();
      expect(err).to.be.instanceOf(TransferAbortedError);
      expect((err as TransferAbortedError).reason).to.equal('write-timeout');
      expect(out.bytesSent).to.be.below(256 * MiB);
      expect(maxBuffered).to.be.at.most(1 * MiB + 2 * MiB);
      expect((await admin(small, '/metrics')).text).to.match(/hie_relay_write_timeouts_total 1\b/);
    } finally {
      stuck.terminate();
      await sender.close();
      await small.close(0);
    }
  });

  it('lets a second connection of the same agent replace the first (close code 4002)', async function () {
    const first = await connectAgent(fed, relay, 'delta');
    const gone = once(first, 'disconnected');
    const second = await connectAgent(fed, relay, 'delta');
    const [info] = (await gone) as [{ code: number }];
    expect(info.code).to.equal(4002);
    expect(second.connected).to.equal(true);
    const r = JSON.parse((await admin(relay, '/v1/agents')).text) as { agents: Array<{ id: string }> };
    expect(r.agents.filter((a) => a.id === 'delta')).to.have.length(1);
    await second.close();
  });

  it('closes a connected agent whose certificate gets revoked, and refuses it afterwards', async function () {
    const victim = await connectAgent(fed, relay, 'delta');
    const bystander = alpha;
    const gone = once(victim, 'disconnected');
    fed.ca.revoke({ id: 'delta' });
    const [info] = (await gone) as [{ code: number; reason: string }];
    expect(info.code).to.equal(4001);
    expect(bystander.connected).to.equal(true);
    const again = new RelayClient({
      url: `wss://127.0.0.1:${relay.port}`,
      servername: 'localhost',
      identity: loadIdentity(fed.agents.delta!),
      reconnect: false,
    });
    const err = await again.connect().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(RelayError).with.property('code', 'ERR_RELAY_REFUSED');
    await again.close();
  });

  it('refuses a client without a certificate and one from a foreign CA before the upgrade', async function () {
    const before = (await admin(relay, '/metrics')).text.match(/hie_relay_connections (\d+)/)?.[1];
    const { WebSocket } = await import('ws');
    const noCert = new WebSocket(`wss://127.0.0.1:${relay.port}/v1/agent`, { ca: loadIdentity(fed.agents.alpha!).caPem });
    let opened = false;
    noCert.on('open', () => {
      opened = true;
    });
    await new Promise((resolve) => {
      noCert.on('error', resolve);
      noCert.on('close', resolve);
    });
    expect(opened).to.equal(false);

    const other = makeFederation(`${tmp.dir}/foreign`, ['alpha']);
    const foreign = loadIdentity(other.agents.alpha!);
    const client = new RelayClient({
      url: `wss://127.0.0.1:${relay.port}`,
      servername: 'localhost',
      identity: { ...foreign, caPem: loadIdentity(fed.agents.alpha!).caPem },
      reconnect: false,
    });
    const err = await client.connect().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(RelayError).with.property('code', 'ERR_RELAY_REFUSED');
    await client.close();
    const after = (await admin(relay, '/metrics')).text;
    expect(after.match(/hie_relay_connections (\d+)/)?.[1]).to.equal(before);
    // Both are answered with a status and counted by reason (no longer dropped in the TLS layer).
    expect(after).to.match(/hie_relay_tls_refused_total\{reason="unknown-ca"\} [1-9]/);
    expect(after).to.match(/hie_relay_tls_refused_total\{reason="no-certificate"\} [1-9]/);
  });

  it('answers a request for another path with an HTTP status instead of upgrading', async function () {
    const { WebSocket } = await import('ws');
    const { clientTlsOptions } = await import('../../certs/index.ts');
    const ws = new WebSocket(`wss://127.0.0.1:${relay.port}/elsewhere`, { ...clientTlsOptions(loadIdentity(fed.agents.alpha!)) });
    ws.on('error', () => {});
    const [req, res] = (await once(ws, 'unexpected-response')) as [{ destroy: () => void }, { statusCode: number }];
    expect(res.statusCode).to.equal(404);
    req.destroy();
  });

  it('serves /healthz, /readyz and Prometheus metrics on the admin listener', async function () {
    expect((await admin(relay, '/healthz')).status).to.equal(200);
    expect((await admin(relay, '/readyz')).status).to.equal(200);
    const m = await admin(relay, '/metrics');
    for (const name of [
      'hie_relay_connections',
      'hie_relay_transfers_active',
      'hie_relay_transfers_aborted_total',
      'hie_relay_bytes_out_total',
      'hie_relay_crl_next_update_seconds',
      'hie_relay_cert_expiry_seconds',
    ]) {
      expect(m.text).to.contain(name);
    }
    expect(m.text).to.match(/hie_relay_transfers_aborted_total\{reason="no-route"\} [1-9]/);
    expect((await admin(relay, '/nope')).status).to.equal(404);
  });
});
