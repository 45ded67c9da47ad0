import { expect } from 'chai';
import { cpSync } from 'node:fs';
import { encodeMessage, levelSource, MemoryNetwork, Replicator, verifyLedger, type DroppedPeer, type Ledger, type SignedHead } from '../../ledger/index.ts';
import { tempDir } from '../support/tmp.ts';
import { dbPath, makeWorld, type LedgerWorld } from './support.ts';

async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function fill(ledger: Ledger, n: number, tag: string): Promise<void> {
  const all: Array<Promise<unknown>> = [];
  for (let i = 0; i < n; i++)
    all.push(ledger.append({ type: 'exchange.failed', body: { exchange: `${tag}-${String(i).padStart(8, '0')}`, peer: 'bravo', reason: 'timeout' } }));
  await Promise.all(all);
}

async function verifyOpen(ledger: Ledger, world: LedgerWorld): Promise<string[]> {
  const r = await verifyLedger(levelSource(ledger._store), { trust: { caPem: world.caPem } });
  return r.findings.map((f) => `${f.feed}:${f.seq}:${f.rule}`);
}

describe('Replicator', function () {
  let tmp: { dir: string; cleanup: () => void };
  let world: LedgerWorld;
  const open: Ledger[] = [];
  const reps: Replicator[] = [];

  before(async () => {
    tmp = tempDir('hie-ledger-repl-');
    world = await makeWorld(tmp.dir);
  });
  afterEach(async () => {
    for (const r of reps.splice(0)) r.stop();
    for (const l of open.splice(0)) await l.close();
  });
  after(() => tmp.cleanup());

  const openAs = async (id: string | undefined, name: string): Promise<Ledger> => {
    const l = await world.open(id, dbPath(tmp.dir, name));
    open.push(l);
    return l;
  };
  const replicate = (l: Ledger, net: MemoryNetwork, me: string, peers: string[], extra: { rangeEntries?: number } = {}): Replicator => {
    const r = new Replicator(l, net.endpoint(me), { peers, gossipIntervalMs: 50, checkpointIntervalMs: 0, rangeEntries: extra.rangeEntries ?? 100 });
    r.start();
    reps.push(r);
    return r;
  };
  const sameHead = (a: Ledger, b: Ledger, feed: string): boolean => a.head(feed)?.hash !== undefined && a.head(feed)?.hash === b.head(feed)?.hash;

  it('replicates from empty in bounded batches, both ways, and the replica verifies clean', async () => {
    const alpha = await openAs('alpha', 'e-alpha');
    const bravo = await openAs('bravo', 'e-bravo');
    await fill(alpha, 1200, 'exa');
    await fill(bravo, 30, 'exb');
    const net = new MemoryNetwork();
    const ranges: number[] = [];
    const rb = replicate(bravo, net, 'bravo', ['alpha']);
    replicate(alpha, net, 'alpha', ['bravo']);
    rb.on('stored', (e: { count: number }) => ranges.push(e.count));
    await until(() => sameHead(alpha, bravo, 'alpha') && sameHead(alpha, bravo, 'bravo'), 'convergence');
    expect(Math.max(...ranges)).to.be.at.most(100);
    expect(ranges.reduce((a, b) => a + b, 0)).to.equal(1201);
    expect(await verifyOpen(bravo, world)).to.deep.equal([]);
    expect(await verifyOpen(alpha, world)).to.deep.equal([]);
    expect((await bravo.byExchange('exa-00000042'))[0]?.entry.feed).to.equal('alpha');
    // Trees and the authors' checkpoints travel with the ranges: the replica's tree is the author's, under alpha's signature.
    expect(bravo.treeSize('alpha')).to.equal(1201);
    expect((await bravo.treeRoot('alpha')).equals(await alpha.treeRoot('alpha'))).to.equal(true);
    expect(await bravo.checkpointNote('alpha', 1201)).to.equal(await alpha.checkpointNote('alpha', 1201));
  });

  it('carries the author checkpoints through a third replica, so any replica can prove entries of feeds it does not author', async () => {
    const alpha = await openAs('alpha', 'r-alpha');
    const bravo = await openAs(undefined, 'r-bravo');
    const charlie = await openAs(undefined, 'r-charlie');
    await fill(alpha, 20, 'exc');
    const net = new MemoryNetwork();
    replicate(alpha, net, 'alpha', ['bravo']);
    replicate(bravo, net, 'bravo', ['alpha', 'charlie']);
    await until(() => sameHead(alpha, bravo, 'alpha'), 'bravo has alpha');
    replicate(charlie, net, 'charlie', ['bravo']);
    await until(() => sameHead(alpha, charlie, 'alpha'), 'charlie has alpha through bravo');
    const covering = await charlie.checkpointCovering('alpha', 5);
    expect(covering?.note).to.equal(await alpha.checkpointNote('alpha', covering?.size ?? -1));
  });

  it('converges after a long partition, through a third replica', async () => {
    const alpha = await openAs('alpha', 'p-alpha');
    const bravo = await openAs('bravo', 'p-bravo');
    const charlie = await openAs('charlie', 'p-charlie');
    const net = new MemoryNetwork();
    replicate(alpha, net, 'alpha', ['bravo', 'charlie']);
    replicate(bravo, net, 'bravo', ['alpha', 'charlie']);
    replicate(charlie, net, 'charlie', ['alpha', 'bravo']);
    await until(() => sameHead(alpha, charlie, 'alpha') && sameHead(bravo, charlie, 'bravo'), 'first sync');
    net.partition('alpha', 'charlie');
    net.partition('bravo', 'charlie');
    await fill(alpha, 700, 'pa');
    await fill(bravo, 300, 'pb');
    await until(() => sameHead(alpha, bravo, 'alpha'), 'bravo gets alpha during partition');
    expect(charlie.head('alpha')?.seq).to.equal(0);
    // alpha stays cut from charlie: charlie must learn alpha's feed from bravo.
    net.heal('bravo', 'charlie');
    await until(() => sameHead(alpha, charlie, 'alpha') && sameHead(bravo, charlie, 'bravo'), 'convergence after heal');
    expect(await verifyOpen(charlie, world)).to.deep.equal([]);
  });

  it('drops a peer that sends garbage and stores nothing from it', async () => {
    const alpha = await openAs('alpha', 'g-alpha');
    await fill(alpha, 20, 'ga');
    const bravo = await openAs('bravo', 'g-bravo');
    const net = new MemoryNetwork();
    const rb = new Replicator(bravo, net.endpoint('bravo'), { peers: ['alpha', 'mallory', 'eve', 'trudy'], gossipIntervalMs: 0, checkpointIntervalMs: 0 });
    rb.start();
    reps.push(rb);
    const dropped: DroppedPeer[] = [];
    rb.on('dropped', (d: DroppedPeer) => dropped.push(d));
    const head = (await alpha.signedHead()) as SignedHead;
    // Plain junk, and an oversized message.
    net.deliver('mallory', 'bravo', 'not json {');
    net.deliver('eve', 'bravo', 'x'.repeat(2_000_000));
    // A head for alpha whose signature does not verify... (bravo does not know alpha yet: it asks for a range)
    net.deliver('trudy', 'bravo', encodeMessage({ t: 'heads', heads: [{ ...head, sig: head.sig.replace(/^./, head.sig.startsWith('A') ? 'B' : 'A') }] }));
    await until(() => dropped.length >= 2 && rb.status().pending.length === 1, 'junk dropped, request sent');
    // ...then trudy answers with alpha's real entries, one byte altered.
    const entries = await alpha.rawRange('alpha', 0, 20);
    const bad = Buffer.from(entries[10] as Buffer);
    bad[bad.indexOf('timeout')] = 0x54; // 't' -> 'T'
    entries[10] = bad;
    net.deliver('trudy', 'bravo', encodeMessage({ t: 'range', feed: 'alpha', from: 0, entries: entries.map((e) => e.toString('base64')), head }));
    await until(() => dropped.length >= 3, 'trudy dropped');
    await rb.idle();
    expect(dropped.map((d) => d.peer).sort()).to.deep.equal(['eve', 'mallory', 'trudy']);
    expect(dropped.find((d) => d.peer === 'trudy')?.code).to.match(/ERR_LEDGER_(INVALID_ENTRY|CHAIN_BROKEN|NOT_COVERED)/);
    expect(bravo.feeds()).to.deep.equal(['bravo']);
    // Messages from a dropped peer are ignored; the honest peer still gets through.
    replicate(alpha, net, 'alpha', ['bravo']);
    await until(() => sameHead(alpha, bravo, 'alpha'), 'honest sync');
    expect(await verifyOpen(bravo, world)).to.deep.equal([]);
    expect(rb.status().dropped.map((d) => d.peer)).to.include('trudy');
  });

  it('detects a forked feed during replication, keeps evidence, stops the feed, and verify reports it', async () => {
    const base = dbPath(tmp.dir, 'f-alpha1');
    const a1 = await world.open('alpha', base);
    await fill(a1, 10, 'fk');
    await a1.close();
    cpSync(base, dbPath(tmp.dir, 'f-alpha2'), { recursive: true });
    const alpha1 = await openAs('alpha', 'f-alpha1');
    const alpha2 = await openAs('alpha', 'f-alpha2');
    await fill(alpha1, 5, 'one');
    await fill(alpha2, 8, 'two');
    const bravo = await openAs('bravo', 'f-bravo');
    const charlie = await openAs('charlie', 'f-charlie');
    // alpha shows one history to bravo and another to charlie.
    const n1 = new MemoryNetwork();
    const n2 = new MemoryNetwork();
    replicate(alpha1, n1, 'alpha', ['bravo']);
    replicate(bravo, n1, 'bravo', ['alpha']);
    replicate(alpha2, n2, 'alpha', ['charlie']);
    replicate(charlie, n2, 'charlie', ['alpha']);
    await until(() => sameHead(alpha1, bravo, 'alpha') && sameHead(alpha2, charlie, 'alpha'), 'both forks replicated');
    for (const r of reps.splice(0)) r.stop();
    // bravo and charlie compare notes.
    const n3 = new MemoryNetwork();
    const rb = replicate(bravo, n3, 'bravo', ['charlie']);
    const rc = replicate(charlie, n3, 'charlie', ['bravo']);
    const seen: string[] = [];
    rb.on('equivocation', (e: { feed: string }) => seen.push(`bravo:${e.feed}`));
    rc.on('equivocation', (e: { feed: string }) => seen.push(`charlie:${e.feed}`));
    await until(() => bravo.isStopped('alpha') && charlie.isStopped('alpha'), 'fork detected on both sides');
    expect(seen.sort()).to.deep.equal(['bravo:alpha', 'charlie:alpha']);
    const ev = (await bravo.status()).evidence;
    expect(ev).to.have.length(1);
    expect(ev[0]).to.include({ kind: 'equivocation', feed: 'alpha', peer: 'charlie' });
    expect((await bravo.status()).feeds.find((f) => f.feed === 'alpha')?.stopped).to.equal(true);
    expect(await verifyOpen(bravo, world)).to.include(`alpha:${ev[0]!.seq}:equivocation`);
    // Stopped: charlie takes no more of alpha, even from alpha itself.
    const stoppedAt = charlie.head('alpha')?.seq;
    await fill(alpha2, 3, 'more');
    expect(rc.status().stopped).to.deep.equal(['alpha']);
    const rejected = await charlie
      .ingest('alpha', await alpha2.rawRange('alpha', (stoppedAt as number) + 1, 100), (await alpha2.signedHead()) as SignedHead)
      .catch((e: { code: string }) => e.code);
    expect(rejected).to.equal('ERR_LEDGER_FEED_STOPPED');
  });

  it('keeps peers\u2019 signed checkpoints and records a checkpoint that contradicts its copy', async () => {
    const base = dbPath(tmp.dir, 'c-alpha1');
    const a1 = await world.open('alpha', base);
    await fill(a1, 5, 'cp');
    await a1.close();
    cpSync(base, dbPath(tmp.dir, 'c-alpha2'), { recursive: true });
    const alpha1 = await openAs('alpha', 'c-alpha1');
    const alpha2 = await openAs('alpha', 'c-alpha2');
    await fill(alpha1, 2, 'uno');
    await fill(alpha2, 2, 'dos');
    const bravo = await openAs('bravo', 'c-bravo');
    const charlie = await openAs('charlie', 'c-charlie');
    for (const [l, src] of [
      [bravo, alpha1],
      [charlie, alpha2],
    ] as const) {
      await l.ingest('alpha', await src.rawRange('alpha', 0, 100), (await src.signedHead()) as SignedHead);
    }
    // bravo needs charlie's feed (its key) to check charlie's checkpoint.
    await bravo.ingest('charlie', await charlie.rawRange('charlie', 0, 10), (await charlie.signedHead('charlie')) as SignedHead);
    const cp = await charlie.checkpoint();
    expect(await bravo.addCheckpoint(cp, 'charlie')).to.equal('conflict');
    expect(await bravo.addCheckpoint({ ...cp, ts: new Date().toISOString() }, 'charlie')).to.equal('invalid');
    expect((await bravo.checkpoints('charlie')).length).to.equal(1);
    expect((await bravo.evidence()).map((e) => e.kind)).to.deep.equal(['checkpoint']);
    expect(await verifyOpen(bravo, world)).to.include('alpha:7:checkpoint.conflict');
  });
});
