import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import {
  appendToRange,
  consistencyPath,
  EMPTY_ROOT,
  inclusionPath,
  leafHash,
  merkleRoot,
  rootAt,
  rootFromCompactRange,
  rootFromInclusionProof,
  verifyConsistency,
  verifyInclusion,
  type NodeReader,
} from '../../ledger/merkle.ts';

// Published RFC 6962 test tree and proofs, carried in as data (source named in the file).
const V = JSON.parse(readFileSync(new URL('../fixtures/rfc6962-merkle-vectors.json', import.meta.url), 'utf8')) as {
  leaves: string[];
  roots: string[];
  inclusion: Array<{ leaf: number; size: number; proof: string[] }>;
  consistency: Array<{ size1: number; size2: number; proof: string[] }>;
};
const hx = (s: string): Buffer => Buffer.from(s, 'hex');
const leaves = V.leaves.map((l) => leafHash(hx(l)));
const roots = V.roots.map(hx);
const SOME = hx('abacaba000000000000000000000000000000000000000000060061e00123456');

/** A node store filled by appendToRange, as the ledger keeps it. */
function treeOf(leafHashes: Buffer[]): { read: NodeReader; range: Buffer[] } {
  const nodes = new Map<string, Buffer>();
  const { range, nodes: made } = appendToRange(0, [], leafHashes);
  for (const n of made) nodes.set(`${n.level}/${n.index}`, n.hash);
  const read: NodeReader = async (level, index) => {
    const h = nodes.get(`${level}/${index}`);
    if (!h) throw new Error(`node ${level}/${index} not stored`);
    return h;
  };
  return { read, range };
}

describe('ledger Merkle trees (RFC 9162)', function () {
  it('gives the published roots for every size of the RFC 6962 test tree, in memory, from a compact range and from stored nodes', async function () {
    for (let n = 1; n <= 8; n++) {
      const want = roots[n - 1] as Buffer;
      expect(merkleRoot(leaves.slice(0, n)).equals(want), `memory ${n}`).to.equal(true);
      const t = treeOf(leaves.slice(0, n));
      expect(rootFromCompactRange(t.range).equals(want), `range ${n}`).to.equal(true);
      expect((await rootAt(treeOf(leaves).read, n)).equals(want), `stored ${n}`).to.equal(true);
    }
    expect(rootFromCompactRange([]).equals(hx('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'))).to.equal(true);
  });

  it('generates and verifies the published inclusion proofs', async function () {
    const { read } = treeOf(leaves);
    for (const v of V.inclusion) {
      const proof = v.proof.map(hx);
      const got = await inclusionPath(read, v.leaf - 1, v.size);
      expect(
        got.map((b) => b.toString('hex')),
        `${v.leaf - 1}/${v.size}`,
      ).to.deep.equal(v.proof);
      expect(verifyInclusion(v.leaf - 1, v.size, leaves[v.leaf - 1], proof, roots[v.size - 1])).to.equal(true);
    }
  });

  it('refuses every corrupted inclusion proof (wrong index or size, wrong leaf or root, padded, truncated, flipped)', function () {
    for (const v of V.inclusion) {
      const i = v.leaf - 1;
      const proof = v.proof.map(hx);
      const root = roots[v.size - 1] as Buffer;
      const leaf = leaves[i] as Buffer;
      const bad: Array<[string, unknown, unknown, unknown, unknown, unknown]> = [
        ['index - 1', i - 1, v.size, leaf, proof, root],
        ['index + 1', i + 1, v.size, leaf, proof, root],
        ['index ^ 2', i ^ 2, v.size, leaf, proof, root],
        ['size * 2', i, v.size * 2, leaf, proof, root],
        ['size / 2', i, Math.floor(v.size / 2), leaf, proof, root],
        ['wrong leaf', i, v.size, leafHash(Buffer.from('WrongLeaf')), proof, root],
        ['empty root', i, v.size, leaf, proof, EMPTY_ROOT],
        ['random root', i, v.size, leaf, proof, SOME],
        ['trailing garbage', i, v.size, leaf, [...proof, Buffer.alloc(0)], root],
        ['trailing root', i, v.size, leaf, [...proof, root], root],
        ['preceding garbage', i, v.size, leaf, [Buffer.alloc(0), ...proof], root],
        ['preceding root', i, v.size, leaf, [root, ...proof], root],
        ['fractional index', i + 0.5, v.size, leaf, proof, root],
        ['index as string', String(i), v.size, leaf, proof, root],
        ['huge size', i, 2 ** 60, leaf, proof, root],
        ['proof not an array', i, v.size, leaf, 'x', root],
      ];
      proof.forEach((_, k) => {
        const flipped = proof.map((b) => Buffer.from(b));
        (flipped[k] as Buffer).writeUInt8(((flipped[k] as Buffer)[0] as number) ^ 8, 0);
        bad.push([`flipped proof[${k}]`, i, v.size, leaf, flipped, root]);
      });
      if (proof.length > 0) bad.push(['removed component', i, v.size, leaf, proof.slice(0, -1), root]);
      if (proof.length > 1) bad.push(['inserted component', i, v.size, leaf, [proof[0], SOME, ...proof.slice(1)], root]);
      for (const [desc, ...args] of bad) expect(verifyInclusion(...args), `${desc} at ${i}/${v.size}`).to.equal(false);
    }
  });

  it('handles sizes 0 and 1: nothing is in an empty tree; a single leaf is its own root with an empty proof', function () {
    const leaf = leafHash(Buffer.from('data'));
    expect(verifyInclusion(0, 1, leaf, [], leaf)).to.equal(true);
    expect(verifyInclusion(0, 1, leaf, [], Buffer.alloc(0))).to.equal(false);
    expect(verifyInclusion(0, 1, Buffer.alloc(0), [], leaf)).to.equal(false);
    for (const [index, size] of [
      [0, 0],
      [1, 0],
      [2, 1],
      [1, 1],
      [-1, 1],
    ] as const) {
      expect(verifyInclusion(index, size, SOME, [], EMPTY_ROOT), `${index}/${size}`).to.equal(false);
      expect(rootFromInclusionProof(index, size, SOME, [])).to.equal(undefined);
    }
  });

  it('generates and verifies the published consistency proofs and refuses corrupted ones', async function () {
    const { read } = treeOf(leaves);
    for (const v of V.consistency) {
      const proof = v.proof.map(hx);
      const r1 = roots[v.size1 - 1] as Buffer;
      const r2 = roots[v.size2 - 1] as Buffer;
      expect((await consistencyPath(read, v.size1, v.size2)).map((b) => b.toString('hex'))).to.deep.equal(v.proof);
      expect(verifyConsistency(v.size1, v.size2, proof, r1, r2), `${v.size1}->${v.size2}`).to.equal(true);
      if (proof.length === 0) continue;
      const bad: Array<[string, unknown, unknown, unknown, unknown, unknown]> = [
        ['size1 - 1', v.size1 - 1, v.size2, proof, r1, r2],
        ['size1 + 1', v.size1 + 1, v.size2, proof, r1, r2],
        ['size1 ^ 2', v.size1 ^ 2, v.size2, proof, r1, r2],
        ['size2 * 2', v.size1, v.size2 * 2, proof, r1, r2],
        ['size2 / 2', v.size1, Math.floor(v.size2 / 2), proof, r1, r2],
        ['wrong root1', v.size1, v.size2, proof, SOME, r2],
        ['wrong root2', v.size1, v.size2, proof, r1, SOME],
        ['swapped roots', v.size1, v.size2, proof, r2, r1],
        ['empty proof', v.size1, v.size2, [], r1, r2],
        ['trailing garbage', v.size1, v.size2, [...proof, Buffer.alloc(0)], r1, r2],
        ['trailing root1', v.size1, v.size2, [...proof, r1], r1, r2],
        ['trailing root2', v.size1, v.size2, [...proof, r2], r1, r2],
        ['preceding root1', v.size1, v.size2, [r1, ...proof], r1, r2],
        ['preceding root2', v.size1, v.size2, [r2, ...proof], r1, r2],
        ['preceding proof[0]', v.size1, v.size2, [proof[0], ...proof], r1, r2],
        ['truncated', v.size1, v.size2, proof.slice(0, -1), r1, r2],
      ];
      proof.forEach((_, k) => {
        const flipped = proof.map((b) => Buffer.from(b));
        (flipped[k] as Buffer).writeUInt8(((flipped[k] as Buffer)[0] as number) ^ 16, 0);
        bad.push([`flipped proof[${k}]`, v.size1, v.size2, flipped, r1, r2]);
      });
      for (const [desc, ...args] of bad) expect(verifyConsistency(...args), `${desc} ${v.size1}->${v.size2}`).to.equal(false);
    }
  });

  it('follows the edge cases of consistency: equal sizes, size 0, time travel', function () {
    const a = roots[0] as Buffer;
    const b = roots[1] as Buffer;
    expect(verifyConsistency(0, 0, [], a, a)).to.equal(true);
    expect(verifyConsistency(0, 0, [], a, b)).to.equal(false);
    expect(verifyConsistency(0, 1, [], a, b)).to.equal(true);
    expect(verifyConsistency(1, 1, [], b, b)).to.equal(true);
    expect(verifyConsistency(1, 1, [], a, b)).to.equal(false);
    expect(verifyConsistency(1, 0, [], a, b)).to.equal(false);
    expect(verifyConsistency(2, 1, [], a, b)).to.equal(false);
    expect(verifyConsistency(1, 2, [], a, b)).to.equal(false);
    expect(verifyConsistency(0, 0, [EMPTY_ROOT], EMPTY_ROOT, EMPTY_ROOT)).to.equal(false);
    expect(verifyConsistency(0, 1, [EMPTY_ROOT], EMPTY_ROOT, EMPTY_ROOT)).to.equal(false);
    expect(verifyConsistency(1, 1, [EMPTY_ROOT], EMPTY_ROOT, EMPTY_ROOT)).to.equal(false);
  });

  it('agrees with the in-memory tree for every proof of every size up to 70', async function () {
    const many = Array.from({ length: 70 }, (_, i) => leafHash(Buffer.from(`e${i}`)));
    const { read } = treeOf(many);
    for (let n = 1; n <= 70; n++) {
      const root = merkleRoot(many.slice(0, n));
      for (let m = 0; m < n; m++) expect(verifyInclusion(m, n, many[m], await inclusionPath(read, m, n), root), `${m}/${n}`).to.equal(true);
      for (let m = 0; m <= n; m++) {
        const r1 = m === 0 ? EMPTY_ROOT : merkleRoot(many.slice(0, m));
        expect(verifyConsistency(m, n, await consistencyPath(read, m, n), r1, root), `${m}->${n}`).to.equal(true);
      }
    }
  });
});
