import { expect } from 'chai';
import { createPublicKey } from 'node:crypto';
import { Ledger, type AppendInput } from '../../ledger/index.ts';
import { leafHash, merkleRoot, verifyConsistency, verifyInclusion } from '../../ledger/merkle.ts';
import { openCheckpoint } from '../../ledger/note.ts';
import { Store } from '../../ledger/store.ts';
import { tempDir } from '../support/tmp.ts';
import { contentHash, dbPath, makeWorld, type LedgerWorld } from './support.ts';

describe('Ledger Merkle trees and checkpoints', function () {
  let tmp: { dir: string; cleanup: () => void };
  let world: LedgerWorld;
  let n = 0;
  before(async () => {
    tmp = tempDir('hie-ledger-tree-');
    world = await makeWorld(tmp.dir);
  });
  after(() => tmp.cleanup());
  const path = () => dbPath(tmp.dir, `t${n++}`);
  const received = (i: number): AppendInput => ({
    type: 'exchange.received',
    body: { exchange: `exchange-${String(i).padStart(4, '0')}`, from: 'bravo', contentType: 'application/fhir+json', bytes: i, hash: contentHash(i) },
  });
  const leavesOf = async (l: Ledger, feed: string): Promise<Buffer[]> => {
    const out: Buffer[] = [];
    for await (const e of l.entries(feed)) out.push(leafHash(e.bytes));
    return out;
  };
  const alphaKey = () => createPublicKey(world.agents.alpha?.signingKey as never);

  it('keeps the tree of the exact stored bytes and signs a checkpoint with every committed batch', async () => {
    const l = await world.open('alpha', path());
    await Promise.all(Array.from({ length: 10 }, (_, i) => l.append(received(i))));
    await l.append(received(10));
    const leaves = await leavesOf(l, 'alpha');
    expect(l.treeSize('alpha')).to.equal(12);
    expect((await l.treeRoot('alpha')).equals(merkleRoot(leaves))).to.equal(true);
    const origin = l.origin('alpha');
    expect(origin).to.match(/^hie\.federation\/[0-9a-f]{16}\/alpha$/);
    const cp = openCheckpoint(await l.checkpointNote('alpha', 12), origin, [alphaKey()]);
    expect(cp.size).to.equal(12);
    expect(cp.root.equals(merkleRoot(leaves))).to.equal(true);
    // Genesis had its own batch and checkpoint; the ten concurrent appends one or a few.
    expect(await l.checkpointNote('alpha', 1)).to.be.a('string');
    for (let size = 1; size <= 12; size++) {
      const root = merkleRoot(leaves.slice(0, size));
      expect((await l.treeRoot('alpha', size)).equals(root)).to.equal(true);
      for (let seq = 0; seq < size; seq++) expect(verifyInclusion(seq, size, leaves[seq], await l.inclusionProof('alpha', seq, size), root)).to.equal(true);
      expect(verifyConsistency(size, 12, await l.consistencyProof('alpha', size), root, merkleRoot(leaves))).to.equal(true);
    }
    await l.close();
  });

  it('builds the trees of a ledger written before trees existed at open, without rewriting any entry', async () => {
    const p = path();
    const l = await world.open('alpha', p);
    for (let i = 0; i < 40; i++) await l.append(received(i));
    const root = await l.treeRoot('alpha');
    await l.close();
    // Strip trees and checkpoints, as an older version left the database.
    const s = await Store.open(p);
    const before: Buffer[] = [];
    for await (const v of s.entries.values()) before.push(v);
    await s.tree.clear();
    await s.notes.clear();
    await s.close();
    const again = await world.open('alpha', p);
    expect(again.treeSize('alpha')).to.equal(41);
    expect((await again.treeRoot('alpha')).equals(root)).to.equal(true);
    expect(openCheckpoint(await again.checkpointNote('alpha', 41), again.origin('alpha'), [alphaKey()]).size).to.equal(41);
    const after: Buffer[] = [];
    for await (const v of again._store.entries.values()) after.push(v);
    expect(after.map((b) => b.toString('hex'))).to.deep.equal(before.map((b) => b.toString('hex')));
    await again.append(received(99));
    expect((await again.treeRoot('alpha')).equals(merkleRoot(await leavesOf(again, 'alpha')))).to.equal(true);
    await again.close();
  });

  it('gives ingested feeds trees, and keeps the author checkpoint that comes with a range only when it names that tree', async () => {
    const a = await world.open('alpha', path());
    const r = await world.open('bravo', path());
    for (let i = 0; i < 5; i++) await a.append(received(i));
    const head = await a.signedHead();
    const range = await a.rawRange('alpha', 0, 5);
    const note = await a.checkpointAt(6);
    const stale = await a.checkpointAt(5);
    const r2 = await world.open(undefined, path());
    expect(await r2.ingest('alpha', range, head as never, 'x', stale).catch((e: { code: string }) => e.code)).to.equal('ERR_LEDGER_NOT_COVERED');
    expect(r2.treeSize('alpha')).to.equal(0);
    await r.ingest('alpha', range, head as never, 'alpha', note);
    expect(r.treeSize('alpha')).to.equal(6);
    expect((await r.treeRoot('alpha')).equals(await a.treeRoot('alpha'))).to.equal(true);
    expect(await r.checkpointCovering('alpha', 3)).to.deep.equal({ size: 6, note });
    // One base64 character of the signature changed (past the 4-byte key id, so the key still matches).
    const at = note.lastIndexOf(' ') + 20;
    const forged = note.slice(0, at) + (note[at] === 'A' ? 'B' : 'A') + note.slice(at + 1);
    const r3 = await world.open(undefined, path());
    expect(await r3.ingest('alpha', range, head as never, 'x', forged).catch((e: { code: string }) => e.code)).to.equal('ERR_LEDGER_BAD_SIGNATURE');
    for (const x of [a, r, r2, r3]) await x.close();
  });

  it('signs a checkpoint for a fresh head served to a peer, and after a key rotation with the new key', async () => {
    const l = await world.open('alpha', path());
    for (let i = 0; i < 3; i++) await l.append(received(i));
    await l.signHeadAt(2);
    expect(openCheckpoint(await l.checkpointNote('alpha', 3), l.origin('alpha'), [alphaKey()]).size).to.equal(3);
    const next = await world.newKeys('alpha');
    await l.rotateKey(next.signingKey, next.bundle);
    const note = await l.checkpointNote('alpha', 5);
    expect(openCheckpoint(note, l.origin('alpha'), [createPublicKey(next.signingKey)]).size).to.equal(5);
    expect(() => openCheckpoint(note, l.origin('alpha'), [alphaKey()])).to.throw(/no signature by a known key/);
    await l.close();
  });
});
