import { expect } from 'chai';
import { cpSync } from 'node:fs';
import { countWitnesses, parseWitnessPolicy, type KnownWitness } from '../../ledger/policy.ts';
import { cosignerKey, witnessName } from '../../ledger/cosign.ts';
import { decodeMessage, levelSource, MAX_WITNESS_NOTES, MemoryNetwork, Replicator, verifyLedger, type Ledger } from '../../ledger/index.ts';
import { Witness } from '../../ledger/witness.ts';
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

describe('Witness', function () {
  let tmp: { dir: string; cleanup: () => void };
  let world: LedgerWorld;
  const open: Ledger[] = [];
  const reps: Replicator[] = [];

  before(async () => {
    tmp = tempDir('hie-ledger-witness-');
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
  const witnessOf = (l: Ledger, id: string): Witness => new Witness(l, { id, signingKey: world.agents[id]!.signingKey });
  const replicate = (l: Ledger, w: Witness | undefined, net: MemoryNetwork, me: string, peers: string[]): Replicator => {
    const r = new Replicator(l, net.endpoint(me), { peers, gossipIntervalMs: 50, checkpointIntervalMs: 0, rangeEntries: 100, ...(w ? { witness: w } : {}) });
    r.start();
    reps.push(r);
    return r;
  };
  const known = (ids: string[]): KnownWitness[] => ids.map((id) => ({ id, ...cosignerKey(witnessName(world.caPem, id), world.agents[id]!.signingKey) }));

  it("cosigns a peer's checkpoint after replicating it, and the author gets and keeps every cosignature", async () => {
    const net = new MemoryNetwork();
    const alpha = await openAs('alpha', 'c-alpha');
    const bravo = await openAs('bravo', 'c-bravo');
    const charlie = await openAs('charlie', 'c-charlie');
    const wa = witnessOf(alpha, 'alpha');
    const wb = witnessOf(bravo, 'bravo');
    const wc = witnessOf(charlie, 'charlie');
    await fill(alpha, 40, 'cs');
    replicate(alpha, wa, net, 'alpha', ['bravo', 'charlie']);
    replicate(bravo, wb, net, 'bravo', ['alpha', 'charlie']);
    replicate(charlie, wc, net, 'charlie', ['alpha', 'bravo']);
    const size = alpha.treeSize('alpha');
    const policy2 = parseWitnessPolicy({ quorum: 2 });
    await until(async () => {
      const n = await wa.cosigned('alpha', size);
      return n !== undefined && countWitnesses(n, 'alpha', known(['bravo', 'charlie']), policy2).witnessed;
    }, 'alpha to hold two cosignatures of its checkpoint');
    const last = await wb.lastCosigned('alpha');
    expect(last?.size).to.equal(size);
    // The witness cosigns only a consistent, newer checkpoint: a second round of appends moves its state on.
    await fill(alpha, 5, 'cs2');
    await until(async () => (await wb.lastCosigned('alpha'))?.size === size + 5, 'bravo to cosign the grown tree');
    expect(await wb.evidence()).to.deep.equal([]);
    const r = await verifyLedger(levelSource(alpha._store), { trust: { caPem: world.caPem } });
    expect(r.findings).to.deep.equal([]);
  });

  it('detects a split view once the two witnesses gossip: both signed checkpoints kept, reported by verify on both', async () => {
    // The author forks: two copies of its database, each extended differently, shown to one witness each.
    const a1 = await openAs('alpha', 's-alpha1');
    await fill(a1, 10, 'base');
    await a1.close();
    open.splice(open.indexOf(a1), 1);
    cpSync(dbPath(tmp.dir, 's-alpha1'), dbPath(tmp.dir, 's-alpha2'), { recursive: true });
    const x = await openAs('alpha', 's-alpha1');
    const y = await openAs('alpha', 's-alpha2');
    await fill(x, 6, 'left');
    await fill(y, 6, 'right');
    const bravo = await openAs('bravo', 's-bravo');
    const charlie = await openAs('charlie', 's-charlie');
    const wb = witnessOf(bravo, 'bravo');
    const wc = witnessOf(charlie, 'charlie');
    const netB = new MemoryNetwork();
    const netC = new MemoryNetwork();
    replicate(x, undefined, netB, 'alpha', ['bravo']);
    replicate(bravo, wb, netB, 'bravo', ['alpha']);
    replicate(y, undefined, netC, 'alpha', ['charlie']);
    replicate(charlie, wc, netC, 'charlie', ['alpha']);
    await until(async () => (await wb.lastCosigned('alpha'))?.size === 17 && (await wc.lastCosigned('alpha'))?.size === 17, 'both witnesses to cosign');
    expect(await wb.evidence()).to.deep.equal([]);
    expect(await wc.evidence()).to.deep.equal([]);
    // Now the witnesses talk to each other.
    const netW = new MemoryNetwork();
    replicate(bravo, wb, netW, 'bravo', ['charlie']);
    replicate(charlie, wc, netW, 'charlie', ['bravo']);
    await until(async () => (await wb.evidence()).length > 0 && (await wc.evidence()).length > 0, 'split-view evidence at both witnesses');
    for (const w of [wb, wc]) {
      const [ev] = await w.evidence();
      expect(ev?.kind).to.equal('split');
      expect(ev?.notes).to.have.length(2);
      expect(ev?.notes[0]).to.not.equal(ev?.notes[1]);
    }
    for (const l of [bravo, charlie]) {
      const r = await verifyLedger(levelSource(l._store), { trust: { caPem: world.caPem } });
      expect(r.findings.map((f) => f.rule)).to.include('witness.equivocation');
    }
  });

  it('catches a rollback below a witnessed checkpoint: the witness keeps evidence, verify reports it on both databases', async () => {
    const net = new MemoryNetwork();
    const alpha = await openAs('alpha', 'r-alpha');
    await fill(alpha, 8, 'early');
    await alpha.close();
    open.splice(open.indexOf(alpha), 1);
    cpSync(dbPath(tmp.dir, 'r-alpha'), dbPath(tmp.dir, 'r-alpha-old'), { recursive: true });
    const a = await openAs('alpha', 'r-alpha');
    const wa = witnessOf(a, 'alpha');
    await fill(a, 8, 'late');
    const bravo = await openAs('bravo', 'r-bravo');
    const wb = witnessOf(bravo, 'bravo');
    const ra = replicate(a, wa, net, 'alpha', ['bravo']);
    const rb = replicate(bravo, wb, net, 'bravo', ['alpha']);
    const size = a.treeSize('alpha');
    await until(async () => (await wb.lastCosigned('alpha'))?.size === size, 'bravo to witness alpha');
    await until(async () => (await wa.cosigned('alpha', size))?.includes('/witness/bravo') === true, 'alpha to hold the cosignature');
    ra.stop();
    rb.stop();
    // The author's own database after it dropped its last entries (and their heads and checkpoints) but kept what it was sent.
    const keptCosigned = (await wa.cosigned('alpha', size)) as string;
    await a.close();
    open.splice(open.indexOf(a), 1);
    const old = await openAs('alpha', 'r-alpha-old');
    await old._store.witness.put(`c!alpha!${String(size).padStart(16, '0')}`, keptCosigned);
    const own = await verifyLedger(levelSource(old._store), { trust: { caPem: world.caPem } });
    expect(own.findings.map((f) => f.rule)).to.include('witness.rollback');
    // A late copy of one of the author's own earlier heads is not a rollback (gossip delayed through a relay restart).
    const early = await old.signedHead('alpha');
    expect(await wb.checkHead(early!, 'alpha')).to.equal(false);
    expect((await wb.evidence()).some((e) => e.kind === 'rollback')).to.equal(false);
    // The rolled-back author writes again and gossips its (shorter, newer) head to its witness.
    await fill(old, 1, 'rewritten');
    const net2 = new MemoryNetwork();
    const wOld = witnessOf(old, 'alpha');
    replicate(old, wOld, net2, 'alpha', ['bravo']);
    replicate(bravo, wb, net2, 'bravo', ['alpha']);
    await until(async () => (await wb.evidence()).some((e) => e.kind === 'rollback'), 'rollback evidence at the witness');
    // And the author hears from its witness of a checkpoint of its own beyond what it holds.
    await until(async () => (await wOld.evidence()).some((e) => e.kind === 'rollback'), 'rollback evidence at the author');
    expect((await wOld.evidence()).find((e) => e.kind === 'rollback')?.detail).to.match(/own feed at tree size 17.* is beyond the 10 entries it holds/);
    const r = await verifyLedger(levelSource(bravo._store), { trust: { caPem: world.caPem } });
    expect(r.findings.find((f) => f.rule === 'witness.rollback')?.detail).to.match(/ending at seq 9 .* below the checkpoint of size 17/);
  });

  it('does not cosign a checkpoint that names a root other than the entries it holds', async () => {
    const alpha = await openAs('alpha', 'f-alpha');
    const bravo = await openAs('bravo', 'f-bravo');
    await fill(alpha, 5, 'f');
    const net = new MemoryNetwork();
    const wb = witnessOf(bravo, 'bravo');
    replicate(alpha, undefined, net, 'alpha', ['bravo']);
    replicate(bravo, wb, net, 'bravo', ['alpha']);
    await until(async () => (await wb.lastCosigned('alpha'))?.size === 6, 'bravo to cosign');
    const { signCheckpointNote } = await import('../../ledger/note.ts');
    const forged = signCheckpointNote({ origin: alpha.origin('alpha'), size: 6, root: Buffer.alloc(32, 1) }, world.agents['alpha']!.signingKey);
    expect(await wb.observe('alpha', forged, 'alpha')).to.equal('equivocation');
    expect((await wb.lastCosigned('alpha'))?.root.equals(await alpha.treeRoot('alpha', 6))).to.equal(true);
    const grown = signCheckpointNote({ origin: alpha.origin('alpha'), size: 99, root: Buffer.alloc(32, 2) }, world.agents['alpha']!.signingKey);
    expect(await wb.observe('alpha', grown, 'alpha')).to.equal('pending');
    expect(await wb.observe('alpha', forged.replace('6\n', '7\n'), 'alpha')).to.equal('invalid');
  });

  it('refuses malformed witness gossip on the wire (too many notes, evidence that is not a pair, unknown keys)', () => {
    const code = (m: unknown): string | undefined => {
      try {
        decodeMessage(JSON.stringify(m));
      } catch (err) {
        return (err as { code?: string }).code;
      }
      return undefined;
    };
    const note = { feed: 'alpha', note: 'x\n\n\u2014 k AAAA\n' };
    expect(code({ t: 'witness', notes: [note] })).to.equal(undefined);
    expect(code({ t: 'witness', notes: Array.from({ length: MAX_WITNESS_NOTES + 1 }, () => note) })).to.equal('ERR_LEDGER_MESSAGE_INVALID');
    expect(code({ t: 'witness', notes: [], evidence: [{ feed: 'alpha', notes: ['a'] }] })).to.equal('ERR_LEDGER_MESSAGE_INVALID');
    expect(code({ t: 'witness', notes: [{ ...note, extra: 1 }] })).to.equal('ERR_LEDGER_MESSAGE_INVALID');
    expect(code({ t: 'witness', notes: [{ feed: 'Not A Feed', note: 'x' }] })).to.equal('ERR_LEDGER_MESSAGE_INVALID');
  });

  it('keeps gossiped evidence only when its two signed checkpoints really conflict', async () => {
    const alpha = await openAs('alpha', 'g-alpha');
    const charlie = await openAs('charlie', 'g-charlie');
    await fill(alpha, 3, 'g');
    const wc = witnessOf(charlie, 'charlie');
    const { signCheckpointNote } = await import('../../ledger/note.ts');
    const key = world.agents['alpha']!.signingKey;
    // charlie holds alpha's genesis only: it knows alpha's key, not its entries.
    await charlie.ingest('alpha', await alpha.rawRange('alpha', 0, 0), (await alpha.signHeadAt(0))!, 'alpha');
    const real = await alpha.checkpointAt(4);
    const older = await alpha.checkpointAt(1);
    expect(await wc.takeEvidence({ feed: 'alpha', notes: [real, older] }, 'bravo')).to.equal(false);
    const unsigned = signCheckpointNote({ origin: alpha.origin('alpha'), size: 4, root: Buffer.alloc(32, 9) }, world.agents['bravo']!.signingKey);
    expect(await wc.takeEvidence({ feed: 'alpha', notes: [real, unsigned] }, 'bravo')).to.equal(false);
    const fork = signCheckpointNote({ origin: alpha.origin('alpha'), size: 4, root: Buffer.alloc(32, 9) }, key);
    expect(await wc.takeEvidence({ feed: 'alpha', notes: [real, fork] }, 'bravo')).to.equal(true);
    expect((await wc.evidence()).map((e) => e.kind)).to.deep.equal(['split']);
    const r = await verifyLedger(levelSource(charlie._store), { trust: { caPem: world.caPem } });
    expect(r.findings.map((f) => f.rule)).to.include('witness.equivocation');
  });
});
