import { createHash } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { expect } from 'chai';
import { loadIdentity, type Identity } from '../../certs/index.ts';
import { RelayClient, TransferAbortedError, type InboundTransfer, type OutboundTransfer } from '../../relay/protocol/index.ts';
import { patternStream } from '../support/data.ts';
import { makeFederation } from '../support/federation.ts';
import { tempDir } from '../support/tmp.ts';
import { spawnRelay, type RelayProcess } from './support/harness.ts';

const MiB = 1024 * 1024;

/** Writes `size` pattern bytes into `out`; resolves with how the transfer ended. */
async function push(out: OutboundTransfer, size: number, seed: number): Promise<Error | undefined> {
  try {
    await pipeline(patternStream(size, seed).stream, out);
    return undefined;
  } catch (err) {
    return err as Error;
  }
}

describe('fault injection: a slow consumer (RelayClient level, relay as a process)', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  let relay: RelayProcess;
  const ids: Record<string, Identity> = {};
  const clients: RelayClient[] = [];

  const client = async (id: string): Promise<RelayClient> => {
    const c = new RelayClient({
      url: `wss://127.0.0.1:${relay.port}`,
      identity: ids[id]!,
      reconnect: false,
    });
    await c.connect();
    clients.push(c);
    return c;
  };

  before(async function () {
    tmp = tempDir();
    const fed = makeFederation(tmp.dir, ['sender', 'sleepy', 'stuck', 'alpha', 'bravo']);
    for (const [id, f] of Object.entries(fed.agents)) ids[id] = loadIdentity({ ...f, crl: fed.crlPath });
    relay = await spawnRelay(fed, tmp.dir, 0, { writeTimeoutMs: 2000 });
  });
  after(async function () {
    for (const c of clients) await c.close().catch(() => undefined);
    await relay?.kill();
    tmp.cleanup();
  });

  async function otherPairWorks(seed: number): Promise<void> {
    const [a, b] = [await client(`alpha`), await client(`bravo`)];
    const incoming = new Promise<InboundTransfer>((r) => b.once('transfer', r));
    const data = patternStream(48 * MiB, seed);
    const sending = pipeline(data.stream, a.openTransfer('bravo'));
    const hash = createHash('sha256');
    for await (const chunk of await incoming) hash.update(chunk as Buffer);
    await sending;
    expect(hash.digest('hex'), 'the other pair got its bytes intact').to.equal(data.sha256());
    await a.close();
    await b.close();
  }

  it('keeps relay memory bounded and other pairs working while a receiver stops reading its transfer', async function () {
    const sender = await client('sender');
    const sleepy = await client('sleepy');
    const rss0 = relay.rss();
    const arrived = new Promise<InboundTransfer>((r) => sleepy.once('transfer', r));
    // 256 MiB offered to a receiver that never reads: only the credit window may travel.
    const ended = push(sender.openTransfer('sleepy'), 256 * MiB, 5);
    const unread = await arrived;
    await otherPairWorks(6);
    const grown = relay.rss() - rss0;
    expect(grown, `relay grew ${(grown / MiB).toFixed(1)} MiB`).to.be.lessThan(64 * MiB);
    // Regression: refusing an inbound transfer nobody listens to used to throw an unhandled 'error'.
    unread.abort('rejected', 'receiver gave up');
    const err = await ended;
    expect(err).to.be.instanceOf(TransferAbortedError);
    expect((err as TransferAbortedError).message).to.contain('receiver gave up');
  });
});
