import { expect } from 'chai';
import { rmSync } from 'node:fs';
import { encodeMessage, FeedRecovery, levelSource, MemoryNetwork, Replicator, verifyLedger, type Ledger, type RecoveryOutcome } from '../../ledger/index.ts';
import { dropTail } from '../support/ledger-damage.ts';
import { tempDir } from '../support/tmp.ts';
import { dbPath, makeWorld, type LedgerWorld } from './support.ts';

async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function fill(ledger: Ledger, n: number, tag: string, batch = 25): Promise<void> {
  for (let i = 0; i < n; i += batch) {
    const all: Array<Promise<unknown>> = [];
    for (let j = i; j < Math.min(n, i + batch); j++)
      all.push(ledger.append({ type: 'exchange.failed', body: { exchange: `${tag}-${String(j).padStart(8, '0')}`, peer: 'bravo', reason: 'timeout' } }));
    await Promise.all(all);
  }
}

async function rawFeed(ledger: Ledger, feed: string): Promise<string[]> {
  const head = ledger.head(feed);
  if (!head) return [];
  return (await ledger.rawRange(feed, 0, head.seq, head.seq + 1)).map((b) => b.toString('base64'));
}

describe('FeedRecovery', function () {
  this.timeout(60_000);
  let tmp: { dir: string; cleanup: () => void };
  let world: LedgerWorld;
  const open: Ledger[] = [];
  const stops: Array<{ stop(): void }> = [];

  before(async () => {
    tmp = tempDir('hie-ledger-recover-');
    world = await makeWorld(tmp.dir);
  });
  afterEach(async () => {
    for (const r of stops.splice(0)) r.stop();
    for (const l of open.splice(0)) await l.close().catch(() => undefined);
  });
  after(() => tmp.cleanup());

  const openAs = async (id: string | undefined, name: string, recover = false): Promise<Ledger> => {
    const l = await world.open(id, dbPath(tmp.dir, name), { recover });
    open.push(l);
    return l;
  };
  const closeLedger = async (l: Ledger): Promise<void> => {
    open.splice(open.indexOf(l), 1);
    await l.close();
  };
  const replicate = (l: Ledger, net: MemoryNetwork, me: string, peers: string[]): Replicator => {
    const r = new Replicator(l, net.endpoint(me), { peers, gossipIntervalMs: 50, checkpointIntervalMs: 0, rangeEntries: 200 });
    r.start();
    stops.push(r);
    return r;
  };
  const recover = (l: Ledger, net: MemoryNetwork, me: string, peers: string[], extra: { timeoutMs?: number; minPeers?: number } = {}): FeedRecovery => {
    const r = new FeedRecovery(l, net.endpoint(me), { peers, timeoutMs: 2_000, ...extra });
    stops.push(r);
    return r;
  };

  /** alpha writes `n` entries, bravo (and charlie) replicate all of them; alpha is closed. Returns the replicas and alpha's bytes. */
  async function story(prefix: string, n: number, withCharlie = false): Promise<{ net: MemoryNetwork; bravo: Ledger; charlie?: Ledger; bytes: string[] }> {
    const net = new MemoryNetwork();
    const alpha = await openAs('alpha', `${prefix}-alpha`);
    const bravo = await openAs('bravo', `${prefix}-bravo`);
    const charlie = withCharlie ? await openAs('charlie', `${prefix}-charlie`) : undefined;
    const ids = withCharlie ? ['alpha', 'bravo', 'charlie'] : ['alpha', 'bravo'];
    const ra = replicate(alpha, net, 'alpha', ids);
    replicate(bravo, net, 'bravo', ids);
    if (charlie) replicate(charlie, net, 'charlie', ids);
    await fill(alpha, n, prefix);
    const head = alpha.head()!;
    await until(() => bravo.head('alpha')?.hash === head.hash && (!charlie || charlie.head('alpha')?.hash === head.hash), 'replicas of alpha');
    const bytes = await rawFeed(alpha, 'alpha');
    ra.stop();
    await closeLedger(alpha);
    return { net, bravo, ...(charlie ? { charlie } : {}), bytes };
  }

  it('gets a lost tail back byte for byte before appending, and the peer takes the next append without evidence', async () => {
    const { net, bravo, bytes } = await story('tail', 300);
    await dropTail(dbPath(tmp.dir, 'tail-alpha'), 'alpha', 120);
    const alpha = await openAs('alpha', 'tail-alpha', true);
    expect(alpha.head()!.seq).to.equal(119);
    expect(alpha.isRecovering).to.equal(true);
    // An append made meanwhile waits (it would take seq 120, which bravo holds).
    const early = alpha.append({ type: 'exchange.failed', body: { exchange: 'tail-early', peer: 'bravo', reason: 'timeout' } });
    const r = recover(alpha, net, 'alpha', ['bravo']);
    const outcome = await r.run();
    expect(outcome.state).to.equal('complete');
    expect(outcome.from).to.equal(119);
    expect(outcome.restored).to.equal(bytes.length - 120);
    expect(outcome.answered).to.deep.equal(['bravo']);
    const early1 = await early;
    expect(early1.seq).to.equal(bytes.length);
    expect((await rawFeed(alpha, 'alpha')).slice(0, bytes.length)).to.deep.equal(bytes);
    // The next append extends bravo's copy: no evidence there, and bravo still replicates alpha.
    replicate(alpha, net, 'alpha', ['bravo']);
    await until(() => bravo.head('alpha')?.seq === early1.seq, 'bravo holds the new append');
    expect(await bravo.evidence()).to.deep.equal([]);
    expect(bravo.isStopped('alpha')).to.equal(false);
    expect(await alpha.evidence()).to.deep.equal([]);
    const v = await verifyLedger(levelSource(alpha._store), { trust: { caPem: world.caPem } });
    expect(v.findings.map((f) => `${f.feed}:${f.seq}:${f.rule}`)).to.deep.equal([]);
  });

  it('with the whole database lost (keys kept) restores the feed from seq 0 instead of writing a new genesis', async () => {
    const { net, bravo, bytes } = await story('disk', 150);
    rmSync(dbPath(tmp.dir, 'disk-alpha'), { recursive: true, force: true });
    const alpha = await openAs('alpha', 'disk-alpha', true);
    expect(alpha.head()).to.equal(undefined);
    const outcome = await recover(alpha, net, 'alpha', ['bravo']).run();
    expect(outcome.state).to.equal('complete');
    expect(outcome.from).to.equal(-1);
    expect(await rawFeed(alpha, 'alpha')).to.deep.equal(bytes);
    const next = await alpha.append({ type: 'exchange.failed', body: { exchange: 'disk-next', peer: 'bravo', reason: 'timeout' } });
    expect(next.seq).to.equal(bytes.length);
    replicate(alpha, net, 'alpha', ['bravo']);
    await until(() => bravo.head('alpha')?.seq === next.seq, 'bravo holds the new append');
    expect(await bravo.evidence()).to.deep.equal([]);
  });

  it('refuses a peer that serves an altered entry of our feed and takes the feed from an honest one', async () => {
    const { net, bravo, charlie, bytes } = await story('forge', 200, true);
    await dropTail(dbPath(tmp.dir, 'forge-alpha'), 'alpha', 50);
    const alpha = await openAs('alpha', 'forge-alpha', true);
    // bravo answers alpha with a range whose entry 60 was changed by one byte (bravo's own copy stays intact);
    // charlie is out of reach until bravo has been refused.
    net.partition('alpha', 'charlie');
    const realSend = net.deliver.bind(net);
    net.deliver = (from, to, message) => {
      if (from === 'bravo' && to === 'alpha' && typeof message === 'string' && message.includes('"t":"range"')) {
        const m = JSON.parse(message) as { entries: string[]; from: number };
        const i = 60 - m.from;
        if (i >= 0 && i < m.entries.length) {
          const b = Buffer.from(m.entries[i]!, 'base64');
          const at = b.indexOf('forge-');
          b[at] = 'F'.charCodeAt(0);
          m.entries[i] = b.toString('base64');
          message = JSON.stringify(m);
        }
      }
      realSend(from, to, message);
    };
    const r = recover(alpha, net, 'alpha', ['bravo', 'charlie']);
    const refused: unknown[] = [];
    r.on('refused', (x) => {
      refused.push(x);
      net.heal('alpha', 'charlie');
      r.kick();
    });
    const outcome = await r.run();
    expect(outcome.state).to.equal('complete');
    expect(outcome.refused.map((x) => x.peer)).to.deep.equal(['bravo']);
    expect(outcome.refused[0]!.code).to.be.oneOf(['ERR_LEDGER_NOT_COVERED', 'ERR_LEDGER_CHAIN_BROKEN', 'ERR_LEDGER_INVALID_ENTRY']);
    expect(outcome.answered).to.deep.equal(['bravo', 'charlie']);
    expect(refused).to.have.length(1);
    expect(await rawFeed(alpha, 'alpha')).to.deep.equal(bytes);
    // A forged range proves nothing against alpha: no evidence anywhere.
    expect(await alpha.evidence()).to.deep.equal([]);
    expect(await bravo.evidence()).to.deep.equal([]);
    expect(await charlie!.evidence()).to.deep.equal([]);
  });

  it('holds appends while no peer answers, asking again each round, and carries on only with minPeers 0', async () => {
    const { net, bravo, bytes } = await story('silent', 80);
    await dropTail(dbPath(tmp.dir, 'silent-alpha'), 'alpha', 40);
    net.partition('alpha', 'bravo');
    const alpha = await openAs('alpha', 'silent-alpha', true);
    const r = recover(alpha, net, 'alpha', ['bravo'], { timeoutMs: 200 });
    const timeouts: Array<{ round: number }> = [];
    r.on('timeout', (t: { round: number }) => timeouts.push(t));
    let settled: RecoveryOutcome | undefined;
    void r.run().then((o) => (settled = o));
    await until(() => timeouts.length >= 3, 'three silent rounds');
    expect(settled).to.equal(undefined);
    expect(alpha.isRecovering).to.equal(true);
    const next = await world.newKeys('alpha');
    const rotation = await alpha.rotateKey(next.signingKey, next.bundle).then(
      () => 'rotated',
      (err: { code?: string }) => err.code,
    );
    expect(rotation).to.equal('ERR_LEDGER_RECOVERING');
    net.heal('alpha', 'bravo');
    await until(() => settled !== undefined, 'recovery once bravo answers');
    expect(settled!.state).to.equal('complete');
    expect(await rawFeed(alpha, 'alpha')).to.deep.equal(bytes);
    expect(await bravo.evidence()).to.deep.equal([]);

    // minPeers 0: an operator's explicit choice to carry on after the timeout (the docs say what it risks).
    await closeLedger(alpha);
    await dropTail(dbPath(tmp.dir, 'silent-alpha'), 'alpha', 79);
    net.partition('alpha', 'bravo');
    const again = await openAs('alpha', 'silent-alpha', true);
    const o = await recover(again, net, 'alpha', ['bravo'], { timeoutMs: 200, minPeers: 0 }).run();
    expect(o.state).to.equal('carried-on');
    expect(o.silent).to.deep.equal(['bravo']);
    expect(again.isRecovering).to.equal(false);
  });

  it("goes on at the round's end when minPeers peers answered and another stayed silent, naming the silent one", async () => {
    const { net, bytes } = await story('quorum', 50, true);
    await dropTail(dbPath(tmp.dir, 'quorum-alpha'), 'alpha', 20);
    net.partition('alpha', 'charlie');
    const alpha = await openAs('alpha', 'quorum-alpha', true);
    const r = recover(alpha, net, 'alpha', ['bravo', 'charlie'], { timeoutMs: 300, minPeers: 1 });
    const timeouts: unknown[] = [];
    r.on('timeout', (t) => timeouts.push(t));
    const o = await r.run();
    expect(o).to.include({ state: 'complete', rounds: 1 });
    expect(o.answered).to.deep.equal(['bravo']);
    expect(o.silent).to.deep.equal(['charlie']);
    expect(timeouts).to.deep.equal([]);
    expect(await rawFeed(alpha, 'alpha')).to.deep.equal(bytes);
    // With both required, the same silence holds appends.
    await closeLedger(alpha);
    await dropTail(dbPath(tmp.dir, 'quorum-alpha'), 'alpha', 20);
    const again = await openAs('alpha', 'quorum-alpha', true);
    const r2 = recover(again, net, 'alpha', ['bravo', 'charlie'], { timeoutMs: 200, minPeers: 2 });
    const t2: unknown[] = [];
    r2.on('timeout', (t) => t2.push(t));
    void r2.run();
    await until(() => t2.length >= 2, 'rounds waiting for charlie');
    expect(again.isRecovering).to.equal(true);
    expect(t2[0]).to.deep.include({ answered: ['bravo'], silent: ['charlie'], carryingOn: false });
  });

  it('asks a peer that was offline as soon as it gossips again, not only at the next round', async () => {
    const { net, bytes } = await story('wake', 40);
    await dropTail(dbPath(tmp.dir, 'wake-alpha'), 'alpha', 15);
    net.partition('alpha', 'bravo');
    const alpha = await openAs('alpha', 'wake-alpha', true);
    // A round lasts far longer than this test waits: only bravo's gossip can bring the answer sooner.
    const r = recover(alpha, net, 'alpha', ['bravo'], { timeoutMs: 3_600_000 });
    let outcome: RecoveryOutcome | undefined;
    void r.run().then((o) => (outcome = o));
    await new Promise((res) => setTimeout(res, 200));
    expect(outcome).to.equal(undefined);
    net.heal('alpha', 'bravo');
    await until(() => outcome !== undefined, 'recovery after bravo gossips');
    expect(outcome).to.include({ state: 'complete', rounds: 1 });
    expect(await rawFeed(alpha, 'alpha')).to.deep.equal(bytes);
  });

  it('does not end while the peer whose ranges it was reading went quiet mid-way, even when another said it holds nothing', async () => {
    const { net, bytes } = await story('stall', 2500);
    // charlie never held alpha's feed: it answers "nothing" at once.
    const charlie = await openAs('charlie', 'stall-charlie');
    replicate(charlie, net, 'charlie', ['alpha']);
    await dropTail(dbPath(tmp.dir, 'stall-alpha'), 'alpha', 10);
    const alpha = await openAs('alpha', 'stall-alpha', true);
    const r = recover(alpha, net, 'alpha', ['bravo', 'charlie'], { timeoutMs: 300 });
    let cut = false;
    r.on('restored', () => {
      if (!cut) net.partition('alpha', 'bravo');
      cut = true;
    });
    const timeouts: unknown[] = [];
    r.on('timeout', (t) => timeouts.push(t));
    let outcome: RecoveryOutcome | undefined;
    void r.run().then((o) => (outcome = o));
    await until(() => timeouts.length >= 1, 'a round that ends with bravo quiet');
    expect(outcome).to.equal(undefined);
    expect(alpha.isRecovering).to.equal(true);
    expect(alpha.head()!.seq).to.be.lessThan(bytes.length - 1);
    net.heal('alpha', 'bravo');
    await until(() => outcome !== undefined, 'recovery once bravo is back');
    expect(outcome!.state).to.equal('complete');
    expect(await rawFeed(alpha, 'alpha')).to.deep.equal(bytes);
  });

  it('holds appends while its own surviving checkpoint is beyond what any peer gives back', async () => {
    const { net, bravo, bytes } = await story('anchor', 100);
    // alpha then writes 20 entries bravo never gets, and loses its tail; its checkpoint of the whole tree survives.
    net.partition('alpha', 'bravo');
    const before = await openAs('alpha', 'anchor-alpha');
    await fill(before, 20, 'anchor-more');
    const signedSize = before.treeSize('alpha');
    await closeLedger(before);
    await dropTail(dbPath(tmp.dir, 'anchor-alpha'), 'alpha', 30, { keepNotes: true });
    net.heal('alpha', 'bravo');
    const alpha = await openAs('alpha', 'anchor-alpha', true);
    expect(alpha.recoveryTarget).to.equal(signedSize);
    const r = recover(alpha, net, 'alpha', ['bravo'], { timeoutMs: 200, minPeers: 0 });
    const timeouts: Array<{ head: number; target: number }> = [];
    r.on('timeout', (t: { head: number; target: number }) => timeouts.push(t));
    void r.run();
    await until(() => timeouts.length >= 2, 'rounds that end short of the checkpoint');
    // It took all bravo holds and still holds appends, even with minPeers 0: one at bytes.length would contradict
    // alpha's own signed checkpoint.
    expect(alpha.head()!.seq).to.equal(bytes.length - 1);
    expect(bravo.head('alpha')!.seq).to.equal(bytes.length - 1);
    expect(timeouts.at(-1)).to.include({ head: bytes.length - 1, target: signedSize });
    expect(alpha.isRecovering).to.equal(true);
    expect(r.status().state).to.equal('recovering');
  });

  it('(the failure it prevents) without recovery, the append after a lost tail is equivocation at the peer', async () => {
    const { net, bravo } = await story('control', 60);
    await dropTail(dbPath(tmp.dir, 'control-alpha'), 'alpha', 30);
    const alpha = await openAs('alpha', 'control-alpha');
    await alpha.append({ type: 'exchange.failed', body: { exchange: 'control-fork', peer: 'bravo', reason: 'timeout' } });
    replicate(alpha, net, 'alpha', ['bravo']);
    await until(async () => (await bravo.evidence()).length > 0, 'evidence at bravo');
    expect(bravo.isStopped('alpha')).to.equal(true);
  });

  it('with a checkpoint policy, holds appends until the restored tree ends at a checkpoint the policy accepts', async () => {
    const { net } = await story('policy', 40);
    await dropTail(dbPath(tmp.dir, 'policy-alpha'), 'alpha', 10);
    const alpha = await openAs('alpha', 'policy-alpha', true);
    let accepting = false;
    const seen: number[] = [];
    const r = new FeedRecovery(alpha, net.endpoint('alpha'), {
      peers: ['bravo'],
      timeoutMs: 200,
      accept: (note, size) => {
        seen.push(size);
        return accepting && note.includes('\n');
      },
    });
    stops.push(r);
    const timeouts: unknown[] = [];
    r.on('timeout', (t) => timeouts.push(t));
    let state: string | undefined;
    void r.run().then((o) => (state = o.state));
    await until(() => timeouts.length >= 2, 'rounds refused by the policy');
    expect(state).to.equal(undefined);
    expect(seen.at(-1)).to.equal(alpha.treeSize('alpha'));
    accepting = true;
    await until(() => state !== undefined, 'recovery once the policy accepts');
    expect(state).to.equal('complete');
  });

  it('ignores answers it did not ask for (a late or unsolicited range)', async () => {
    const { net, bravo } = await story('late', 30);
    await dropTail(dbPath(tmp.dir, 'late-alpha'), 'alpha', 10);
    const alpha = await openAs('alpha', 'late-alpha', true);
    const r = recover(alpha, net, 'alpha', ['bravo']);
    // A range from 15 (never asked for) is not ingested.
    const head = (await bravo.signedHeadCovering('alpha', 15))!;
    const raw = await bravo.rawRange('alpha', 15, head.seq, head.seq);
    net.deliver('bravo', 'alpha', encodeMessage({ t: 'range', feed: 'alpha', from: 15, entries: raw.map((b) => b.toString('base64')), head }));
    const o = await r.run();
    expect(o.state).to.equal('complete');
    expect(o.refused).to.deep.equal([]);
    expect(alpha.head('alpha')!.seq).to.equal(bravo.head('alpha')!.seq);
  });
});
