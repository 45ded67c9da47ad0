import { once } from 'node:events';
import { connect as netConnect, type Socket } from 'node:net';
import { expect } from 'chai';
import type { RunningRelay } from '../../relay/index.ts';
import { makeFederation, type TestFederation } from '../support/federation.ts';
import { tempDir } from '../support/tmp.ts';
import { admin, connectAgent, startTestRelay, until } from './helpers.ts';

/** A TCP connection to the relay's agent port that never sends a byte (a half-open TLS handshake). */
async function silentSocket(relay: RunningRelay): Promise<Socket & { closedAt?: number }> {
  const s: Socket & { closedAt?: number } = netConnect(relay.port, '127.0.0.1');
  s.on('error', () => undefined);
  s.once('close', () => (s.closedAt = Date.now()));
  await once(s, 'connect');
  return s;
}

async function metric(relay: RunningRelay, re: RegExp): Promise<number> {
  return Number(re.exec((await admin(relay, '/metrics')).text)?.[1] ?? 0);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('relay connection admission limits', function () {
  this.timeout(30_000);
  let tmp: ReturnType<typeof tempDir>;
  let fed: TestFederation;

  before(function () {
    tmp = tempDir();
    fed = makeFederation(tmp.dir, ['alpha', 'bravo']);
  });
  after(() => tmp.cleanup());

  describe('limits.handshakeTimeoutMs', function () {
    let relay: RunningRelay;
    before(async function () {
      relay = await startTestRelay(fed, { limits: { handshakeTimeoutMs: 300 } });
    });
    after(() => relay.close(0));

    it('closes a connection that never starts its TLS handshake after the deadline, and counts it', async function () {
      const t0 = Date.now();
      const s = await silentSocket(relay);
      // Node's default would hold it for 120 s; the wait is bounded well below that.
      await until(() => s.closedAt !== undefined, 5000, 'the silent connection to be closed');
      expect(s.closedAt! - t0, 'not closed before the deadline').to.be.at.least(250);
      expect(await metric(relay, /^hie_relay_handshake_timeouts_total (\d+)/m)).to.equal(1);
      // A timed-out handshake is not a refused certificate.
      expect(await metric(relay, /^hie_relay_connections_refused_total\{reason="tls"\} (\d+)/m)).to.equal(0);
    });

    it('leaves an agent that completes its handshake connected past the deadline', async function () {
      const agent = await connectAgent(fed, relay, 'alpha');
      await sleep(600);
      expect(agent.connected).to.equal(true);
      await agent.close();
    });
  });

  describe('limits.maxConnectionsPerAddress', function () {
    const MAX = 3;
    let relay: RunningRelay;
    before(async function () {
      relay = await startTestRelay(fed, { limits: { maxConnectionsPerAddress: MAX, handshakeTimeoutMs: 20_000 } });
    });
    after(() => relay.close(0));

    it('closes the (N+1)th concurrent connection from one address at once, keeps the N, and admits an agent once they close', async function () {
      const held: Array<Socket & { closedAt?: number }> = [];
      try {
        for (let i = 0; i < MAX + 1; i++) held.push(await silentSocket(relay));
        // Exactly one of the N+1 is closed (the last accepted), long before the 20 s handshake deadline.
        await until(() => held.some((s) => s.closedAt !== undefined), 5000, 'one connection to be refused');
        await sleep(300);
        expect(held.filter((s) => s.closedAt === undefined).length, 'the N stay open').to.equal(MAX);
        expect(await metric(relay, /^hie_relay_connections_refused_total\{reason="per-address"\} (\d+)/m)).to.equal(1);
        expect(await metric(relay, /^hie_relay_handshake_timeouts_total (\d+)/m)).to.equal(0);

        // While the address holds N, a valid agent from it is refused too (the limit counts before TLS).
        let refused = false;
        await connectAgent(fed, relay, 'alpha').then(
          (c) => c.close(),
          () => (refused = true),
        );
        expect(refused, 'an agent beyond the per-address limit is refused').to.equal(true);
        expect(await metric(relay, /^hie_relay_connections_refused_total\{reason="per-address"\} (\d+)/m)).to.equal(2);
      } finally {
        for (const s of held) s.destroy();
      }
      await until(() => held.every((s) => s.closedAt !== undefined), 5000, 'held sockets closed');
      // The relay frees the slots when the sockets close; retry briefly while it notices.
      let agent: Awaited<ReturnType<typeof connectAgent>> | undefined;
      for (let attempt = 0; attempt < 20 && !agent; attempt++) {
        agent = await connectAgent(fed, relay, 'bravo').catch(() => undefined);
        if (!agent) await sleep(100);
      }
      expect(agent?.connected, 'a valid agent connects once the others closed').to.equal(true);
      // Its own connection holds one slot, and N-1 more still fit beside it.
      const more: Array<Socket & { closedAt?: number }> = [];
      try {
        for (let i = 0; i < MAX - 1; i++) more.push(await silentSocket(relay));
        await sleep(300);
        expect(more.every((s) => s.closedAt === undefined)).to.equal(true);
      } finally {
        for (const s of more) s.destroy();
        await agent?.close();
      }
    });
  });
});
