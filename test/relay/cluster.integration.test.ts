import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { expect } from 'chai';
import { connect, headers, type Msg, type NatsConnection } from 'nats';
import { loadIdentity } from '../../certs/index.ts';
import {
  encodeMessage,
  InboundTransfer,
  RelayClient,
  RelayError,
  TransferAbortedError,
  verifyUsageStatement,
  type RelayMessage,
} from '../../relay/protocol/index.ts';
import { patternStream } from '../support/data.ts';
import { makeFederation, type TestFederation } from '../support/federation.ts';
import { snapshot, tempDir } from '../support/tmp.ts';
import { startCluster, metricValue, type TestCluster } from './cluster-helpers.ts';
import { admin, hashOf, until } from './helpers.ts';

describe('relay cluster over NATS (integration: real nats-server with TLS and a user per node, three nodes)', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  let fed: TestFederation;
  let cluster: TestCluster;
  const clients: RelayClient[] = [];
  let alpha: RelayClient;
  let bravo: RelayClient;
  let baseline: Record<string, string>;

  /** A plain NATS connection with node 1's credentials (to watch subjects, or to act as another node). */
  function natsAsN1(): Promise<NatsConnection> {
    return connect({
      servers: cluster.nats.url,
      user: cluster.env['NATS_USER_N1'],
      pass: cluster.env['NATS_PASSWORD_N1'],
      tls: { ca: readFileSync(fed.caPath, 'utf8') },
    });
  }

  /** A batch of direct MESSAGEs between nodes. */
  const isBatch = (msg: Msg): boolean => msg.headers?.get('Hie-Kind') === 'messages';

  async function client(id: string, urls: string[], options: { reconnect?: boolean; chunkSize?: number } = {}): Promise<RelayClient> {
    const files = fed.agents[id];
    if (!files) throw new Error(`no agent ${id}`);
    const c = new RelayClient({
      urls,
      identity: loadIdentity({ ...files, crl: fed.crlPath }),
      reconnect: options.reconnect ?? false,
      ...(options.chunkSize ? { chunkSize: options.chunkSize } : {}),
    });
    clients.push(c);
    await c.connect();
    return c;
  }

  before(async function () {
    tmp = tempDir();
    fed = makeFederation(tmp.dir, ['alpha', 'bravo', 'charlie', 'delta']);
    cluster = await startCluster(fed, tmp.dir);
    alpha = await client('alpha', [cluster.url(0)], { chunkSize: 1024 * 1024 });
    bravo = await client('bravo', [cluster.url(1)]);
    baseline = snapshot(tmp.dir);
  });

  after(async function () {
    for (const c of clients) await c.close().catch(() => undefined);
    await cluster?.close();
    tmp?.cleanup();
  });

  it('lists each agent only on the node it is connected to', async function () {
    const on = async (i: number) => JSON.parse((await admin(cluster.relays[i]!, '/v1/agents')).text).agents.map((a: { id: string }) => a.id);
    expect(await on(0)).to.deep.equal(['alpha']);
    expect(await on(1)).to.deep.equal(['bravo']);
    expect(await on(2)).to.deep.equal([]);
    expect(cluster.relays.map((r) => r.nodeId)).to.deep.equal(['n1', 'n2', 'n3']);
  });

  it('routes small messages both ways between agents on different nodes', async function () {
    const got: RelayMessage[] = [];
    const back: RelayMessage[] = [];
    bravo.on('message', (m) => got.push(m));
    alpha.on('message', (m) => back.push(m));
    for (let i = 0; i < 50; i += 1) alpha.sendMessage('bravo', Buffer.from(`ping ${i}`));
    await until(() => got.length === 50, 10_000, 'messages at bravo');
    expect(got.map((m) => m.body.toString())).to.deep.equal(Array.from({ length: 50 }, (_, i) => `ping ${i}`));
    expect(got.every((m) => m.from === 'alpha')).to.equal(true);
    bravo.sendMessage('alpha', Buffer.from('pong'));
    await until(() => back.length === 1, 10_000, 'reply at alpha');
    expect(back[0]?.from).to.equal('bravo');
    const m1 = (await admin(cluster.relays[0]!, '/metrics')).text;
    expect(metricValue(m1, 'hie_relay_nats_forwarded_messages_total', { direction: 'out', kind: 'message' })).to.equal(50);
    expect(metricValue(m1, 'hie_relay_presence_lookups_total', { outcome: 'found' })).to.be.at.least(50);
    expect(metricValue(m1, 'hie_relay_nats_connected')).to.equal(1);
    const m2 = (await admin(cluster.relays[1]!, '/metrics')).text;
    expect(metricValue(m2, 'hie_relay_nats_forwarded_messages_total', { direction: 'in', kind: 'message' })).to.equal(50);
    bravo.removeAllListeners('message');
    alpha.removeAllListeners('message');
  });

  it('carries 300 MB alpha (n1) -> bravo (n2) byte-identical, split under max_payload, with a usage statement for both ends', async function () {
    const total = 300 * 1000 * 1000;
    const src = patternStream(total, 3);
    const incoming = new Promise<InboundTransfer>((resolve) => bravo.once('transfer', resolve));
    // 1 MiB chunks make full-size DATA frames: bigger than NATS max_payload, so the node must split them.
    const out = alpha.openTransfer('bravo', { meta: Buffer.from('{"kind":"study"}') });
    const sending = pipeline(src.stream, out);
    const inbound = await incoming;
    expect(inbound.from).to.equal('alpha');
    expect(inbound.meta.toString()).to.equal('{"kind":"study"}');
    const [received] = await Promise.all([hashOf(inbound), sending]);
    expect(received.bytes).to.equal(total);
    expect(received.hex).to.equal(src.sha256());
    const [u1, u2] = await Promise.all([out.usage, inbound.usage]);
    expect(u1.statement.bytes).to.equal(total);
    expect(u1.statement).to.deep.equal(u2.statement);
    expect(u1.statement.from).to.equal('alpha');
    expect(u1.statement.to).to.equal('bravo');
    expect(verifyUsageStatement(u1.signed, readFileSync(fed.caPath, 'utf8')).bytes).to.equal(total);
    const m1 = (await admin(cluster.relays[0]!, '/metrics')).text;
    const m2 = (await admin(cluster.relays[1]!, '/metrics')).text;
    expect(metricValue(m1, 'hie_relay_nats_forwarded_bytes_total', { direction: 'out' })).to.equal(total);
    // Full 1 MiB DATA frames (plus header) exceed max_payload: each went out as two NATS messages.
    expect(metricValue(m1, 'hie_relay_nats_forwarded_messages_total', { direction: 'out', kind: 'data' })).to.be.at.least(
      2 * Math.floor(total / (1024 * 1024)),
    );
    expect(metricValue(m2, 'hie_relay_nats_forwarded_bytes_total', { direction: 'in' })).to.equal(total);
    expect(metricValue(m1, 'hie_relay_transfers_completed_total')).to.equal(1);
    expect(metricValue(m2, 'hie_relay_transfers_completed_total')).to.equal(1);
    expect(metricValue(m1, 'hie_relay_transfers_active')).to.equal(0);
  });

  it('refuses a transfer and a message to an agent connected nowhere with no-route, answered by "no responders" (not a timeout)', async function () {
    const before1 = metricValue((await admin(cluster.relays[0]!, '/metrics')).text, 'hie_relay_presence_lookups_total', { outcome: 'no-route' });
    const out = alpha.openTransfer('delta');
    out.on('error', () => {});
    const err = await out.usage.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(TransferAbortedError);
    expect((err as TransferAbortedError).reason).to.equal('no-route');
    const undeliverable = once(alpha, 'undeliverable');
    const id = alpha.sendMessage('delta', Buffer.from('hello?'));
    const [u] = (await undeliverable) as [RelayError & { messageId: number; to: string }];
    expect(u.messageId).to.equal(id);
    expect(u.message).to.contain('no-route');
    const m1 = (await admin(cluster.relays[0]!, '/metrics')).text;
    expect(metricValue(m1, 'hie_relay_presence_lookups_total', { outcome: 'no-route' })).to.equal(before1 + 2);
    expect(metricValue(m1, 'hie_relay_presence_lookups_total', { outcome: 'timeout' })).to.equal(0);
  });

  it('sends messages to an agent on a known node straight there (presence cache), and delivers each once when the cache is stale or names a node that is gone', async function () {
    const got: RelayMessage[] = [];
    bravo.on('message', (m) => got.push(m));
    const undeliverable: unknown[] = [];
    alpha.on('undeliverable', (e) => undeliverable.push(e));
    const cache = async (event: string): Promise<number> =>
      metricValue((await admin(cluster.relays[0]!, '/metrics')).text, 'hie_relay_presence_cache_total', { event });
    const hits0 = await cache('hit');
    // n1 learnt where bravo is (n2's announcement, or the answer to a lookup): these go straight to n2.
    for (let i = 0; i < 20; i += 1) alpha.sendMessage('bravo', Buffer.from(`cached ${i}`));
    await until(() => got.length === 20, 10_000, 'cached messages at bravo');
    expect(await cache('hit')).to.equal(hits0 + 20);
    // Announcements that lie: bravo "attached" to n3 (which does not hold it), then to n9 (no such node).
    const nc = await natsAsN1();
    try {
      for (const node of ['n3', 'n9']) {
        const invalidated0 = await cache('invalidated');
        // The announcement and the message race (NATS vs the agent's socket): repeat until n1 had taken the lie first.
        for (let k = 0; k < 5 && (await cache('invalidated')) === invalidated0; k += 1) {
          nc.publish('hie.relay.presence', new TextEncoder().encode(JSON.stringify({ node, id: 'bravo', up: true })));
          await nc.flush();
          const body = `moved ${node} ${k}`;
          alpha.sendMessage('bravo', Buffer.from(body));
          // n3 answers no-route; n9 never answers (its entry times out): either way n1 forgets it and looks bravo up.
          await until(() => got.some((m) => m.body.toString() === body), 10_000, `message after the ${node} announcement`);
          await new Promise((r) => setTimeout(r, 50));
        }
        expect(await cache('invalidated')).to.equal(invalidated0 + 1);
      }
    } finally {
      await nc.close();
    }
    const bodies = got.map((m) => m.body.toString());
    expect(new Set(bodies).size).to.equal(bodies.length);
    expect(undeliverable).to.deep.equal([]);
    bravo.removeAllListeners('message');
    alpha.removeAllListeners('undeliverable');
  });

  it('gathers a burst of messages for one node into a few NATS messages, each delivered once and in order', async function () {
    const got: string[] = [];
    bravo.on('message', (m) => got.push(m.body.toString()));
    const nc = await natsAsN1();
    try {
      // Everything sent to n2's own subject, as n2 receives it: count the batches of MESSAGEs among them.
      let batches = 0;
      const sub = nc.subscribe('hie.relay.node.n2', { callback: (_err, msg) => void (isBatch(msg) && (batches += 1)) });
      await nc.flush();
      const n = 400;
      for (let i = 0; i < n; i += 1) alpha.sendMessage('bravo', Buffer.from(`burst ${i}`));
      await until(() => got.length === n, 10_000, 'burst at bravo');
      await nc.flush();
      sub.unsubscribe();
      expect(got).to.deep.equal(Array.from({ length: n }, (_, i) => `burst ${i}`));
      expect(batches).to.be.greaterThan(0);
      expect(batches, `${n} messages in ${batches} NATS messages`).to.be.below(n / 4);
    } finally {
      await nc.close();
      bravo.removeAllListeners('message');
    }
  });

  it('sends by lookup to a node that leaves its batches unanswered (an older version), not a timeout per message, until it speaks batches', async function () {
    const undeliverable: unknown[] = [];
    alpha.on('undeliverable', (e) => undeliverable.push(e));
    const nc = await natsAsN1();
    try {
      // Node n7 as a node of an older version: it answers lookups for its agent "oldie" and ignores batches.
      let batches = 0;
      const looked: string[] = [];
      nc.subscribe('hie.relay.node.n7', { callback: (_err, msg) => void (isBatch(msg) && (batches += 1)) });
      nc.subscribe('hie.relay.agent.oldie', {
        callback: (_err, msg) => {
          looked.push(Buffer.from(msg.data).toString('latin1'));
          const h = headers();
          h.set('Hie-Node', 'n7');
          msg.respond(new Uint8Array(0), { headers: h });
        },
      });
      await nc.flush();
      const announce = async (): Promise<void> => {
        nc.publish('hie.relay.presence', new TextEncoder().encode(JSON.stringify({ node: 'n7', id: 'oldie', up: true })));
        await nc.flush();
        await new Promise((r) => setTimeout(r, 200));
      };
      await announce();
      // The first message goes straight to n7, is not acked, and is looked up after nats.requestTimeoutMs.
      alpha.sendMessage('oldie', Buffer.from('first'));
      await until(() => looked.length === 1, 10_000, 'first message looked up');
      expect(batches).to.equal(1);
      // n7 is now sent lookups: the next messages never wait on a batch (n7 learnt again from the lookup's answer).
      for (let i = 0; i < 5; i += 1) alpha.sendMessage('oldie', Buffer.from(`next ${i}`));
      await until(() => looked.length === 6, 10_000, 'next messages looked up');
      expect(batches).to.equal(1);
      expect(looked.every((f, i) => f.endsWith(i === 0 ? 'first' : `next ${i - 1}`))).to.equal(true);
      // Anything in batch form from n7 (here an empty ack) says it speaks batches again.
      const h = headers();
      h.set('Hie-Kind', 'acks');
      h.set('Hie-Node', 'n7');
      nc.publish('hie.relay.node.n1', new Uint8Array(0), { headers: h });
      await announce();
      alpha.sendMessage('oldie', Buffer.from('direct again'));
      await until(() => batches === 2, 10_000, 'a batch to n7 again');
      await until(() => looked.length === 7, 10_000, 'the unacked one looked up');
      expect(undeliverable).to.deep.equal([]);
    } finally {
      await nc.close();
      alpha.removeAllListeners('undeliverable');
    }
  });

  it("delivers and answers a direct MESSAGE in the previous version's form (one per NATS message, a JSON ack)", async function () {
    const got: RelayMessage[] = [];
    bravo.on('message', (m) => got.push(m));
    const nc = await natsAsN1();
    try {
      const acks: unknown[] = [];
      nc.subscribe('hie.relay.node.n8', {
        callback: (_err, msg) => {
          if (msg.headers?.get('Hie-Kind') === 'ack') acks.push(...(JSON.parse(Buffer.from(msg.data).toString('utf8')) as unknown[]));
        },
      });
      await nc.flush();
      // Node n8 of the previous version sends to bravo (on n2) and to an agent n2 does not hold.
      for (const [to, seq] of [
        ['bravo', 41],
        ['nobody-here', 42],
      ] as const) {
        const h = headers();
        h.set('Hie-Kind', 'message');
        h.set('Hie-Node', 'n8');
        h.set('Hie-To', to);
        h.set('Hie-Seq', String(seq));
        nc.publish('hie.relay.node.n2', encodeMessage(0, 'alpha', Buffer.from(`old form ${seq}`)), { headers: h });
      }
      await until(() => acks.length === 2, 10_000, 'both answered');
      expect(acks).to.deep.equal([
        [41, null],
        [42, 'no-route'],
      ]);
      await until(() => got.length === 1, 10_000, 'bravo got it');
      expect(got[0]!.from).to.equal('alpha');
      expect(got[0]!.body.toString()).to.equal('old form 41');
    } finally {
      await nc.close();
      bravo.removeAllListeners('message');
    }
  });

  it('aborts a cross-node transfer on both ends when the receiver cancels', async function () {
    const incoming = new Promise<InboundTransfer>((resolve) => bravo.once('transfer', resolve));
    const out = alpha.openTransfer('bravo');
    const src = patternStream(50 * 1024 * 1024, 5);
    const sending = pipeline(src.stream, out).catch((e: unknown) => e);
    const inbound = await incoming;
    inbound.on('error', () => {});
    await new Promise<void>((resolve) => inbound.once('data', () => resolve()));
    inbound.abort('rejected', 'no thanks');
    const err = await sending;
    expect(err).to.be.instanceOf(TransferAbortedError);
    expect((err as TransferAbortedError).reason).to.equal('rejected');
    await until(
      async () => metricValue((await admin(cluster.relays[0]!, '/metrics')).text, 'hie_relay_transfers_active') === 0,
      5000,
      'n1 forgets the transfer',
    );
  });

  it('fails a client over to the next node when its node goes away, and routes to it there', async function () {
    const charlie = await client('charlie', [cluster.url(2), cluster.url(0)], { reconnect: true });
    const readyUrls: string[] = [];
    charlie.on('ready', (info) => readyUrls.push(info.url));
    await cluster.relays[2]!.close(0);
    await until(() => charlie.connected && readyUrls.length === 1, 15_000, 'charlie reconnected');
    expect(readyUrls[0]).to.contain(`:${cluster.relays[0]!.port}/`);
    const got = once(charlie, 'message');
    bravo.sendMessage('charlie', Buffer.from('found you'));
    const [m] = (await got) as [RelayMessage];
    expect(m.body.toString()).to.equal('found you');
  });

  it('persists nothing: the NATS server runs without JetStream and the relays wrote no files', async function () {
    const nc = await natsAsN1();
    try {
      expect(nc.info?.jetstream ?? false).to.equal(false);
      const jsm = await nc.jetstreamManager({ timeout: 1000 }).then(
        () => 'available',
        (e: { code?: string }) => e.code ?? 'error',
      );
      expect(jsm).to.equal('503');
    } finally {
      await nc.close();
    }
    // Every file the relays could reach (their certificates, the CA, the CRL, the NATS config) is unchanged and nothing was added.
    expect(snapshot(tmp.dir)).to.deep.equal(baseline);
    expect(readdirSync(process.cwd()).filter((n) => /\.(log|dat|db)$|^jetstream$/i.test(n))).to.deep.equal([]);
  });
});
