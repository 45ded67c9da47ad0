import { createHash } from 'node:crypto';
import { expect } from 'chai';
import { inclusionProof, leafHash, merkleRoot, rootFromProof } from '../../../hospital-agent/crypto/merkle.ts';

const leaves = (n: number): Buffer[] => Array.from({ length: n }, (_, i) => leafHash(Buffer.from(`leaf ${i}`)));
const node = (l: Buffer, r: Buffer): Buffer => createHash('sha256').update(Buffer.of(1)).update(l).update(r).digest();

describe('Merkle trees (RFC 9162 hashing)', function () {
  it('hashes leaves and nodes with the RFC 9162 domain prefixes and splits at the largest power of two', function () {
    const [a, b, c] = leaves(3) as [Buffer, Buffer, Buffer];
    expect(leafHash(Buffer.from('leaf 0')).equals(createHash('sha256').update(Buffer.of(0)).update('leaf 0').digest())).to.equal(true);
    expect(merkleRoot([a]).equals(a)).to.equal(true);
    expect(merkleRoot([a, b]).equals(node(a, b))).to.equal(true);
    // Three leaves: (a b) c, not a (b c).
    expect(merkleRoot([a, b, c]).equals(node(node(a, b), c))).to.equal(true);
    // The empty-tree hash of RFC 6962 is SHA-256 of nothing; a tree here always has a leaf.
    expect(() => merkleRoot([])).to.throw(TypeError);
  });

  it('matches the RFC 9162 definitions (MTH and PATH, written out recursively here) for every size up to 40', function () {
    const k = (n: number): number => 2 ** Math.ceil(Math.log2(n) - 1);
    const mth = (d: Buffer[]): Buffer => (d.length === 1 ? (d[0] as Buffer) : node(mth(d.slice(0, k(d.length))), mth(d.slice(k(d.length)))));
    const path = (m: number, d: Buffer[]): Buffer[] => {
      if (d.length === 1) return [];
      const s = k(d.length);
      return m < s ? [...path(m, d.slice(0, s)), mth(d.slice(s))] : [...path(m - s, d.slice(s)), mth(d.slice(0, s))];
    };
    for (let n = 1; n <= 40; n += 1) {
      const l = leaves(n);
      expect(merkleRoot(l).equals(mth(l)), `root of ${n}`).to.equal(true);
      for (let i = 0; i < n; i += 1)
        expect(
          inclusionProof(i, l).map((h) => h.toString('hex')),
          `path ${i} of ${n}`,
        ).to.deep.equal(path(i, l).map((h) => h.toString('hex')));
    }
  });

  it('proves every leaf of trees of every size up to 40, and the proof leads to the root', function () {
    for (let n = 1; n <= 40; n += 1) {
      const l = leaves(n);
      const root = merkleRoot(l);
      for (let i = 0; i < n; i += 1) {
        const proof = inclusionProof(i, l);
        expect(proof.length).to.be.at.most(Math.ceil(Math.log2(n)));
        expect(rootFromProof(i, n, l[i] as Buffer, proof)?.equals(root), `leaf ${i} of ${n}`).to.equal(true);
      }
    }
  });

  it('leads elsewhere (or nowhere) for another leaf, index, size or path', function () {
    const l = leaves(13);
    const root = merkleRoot(l);
    const proof = inclusionProof(5, l);
    const other = (x: Buffer | undefined): boolean => x === undefined || !x.equals(root);
    expect(other(rootFromProof(5, 13, l[6] as Buffer, proof))).to.equal(true);
    expect(other(rootFromProof(4, 13, l[5] as Buffer, proof))).to.equal(true);
    // (A size that keeps the leaf's path shape, e.g. 14, leads to the same root: the signed statement names the size.)
    expect(other(rootFromProof(5, 6, l[5] as Buffer, proof))).to.equal(true);
    expect(other(rootFromProof(5, 13, l[5] as Buffer, proof.slice(1)))).to.equal(true);
    expect(other(rootFromProof(5, 13, l[5] as Buffer, [...proof, l[0] as Buffer]))).to.equal(true);
    const flipped = proof.map((p, i) => (i === 1 ? Buffer.from(p).fill((p[0] as number) ^ 1, 0, 1) : p));
    expect(other(rootFromProof(5, 13, l[5] as Buffer, flipped))).to.equal(true);
    // Hostile positions and sizes are refused outright.
    expect(rootFromProof(13, 13, l[5] as Buffer, proof)).to.equal(undefined);
    expect(rootFromProof(-1, 13, l[5] as Buffer, proof)).to.equal(undefined);
    expect(rootFromProof(0, 0, l[5] as Buffer, proof)).to.equal(undefined);
    expect(rootFromProof(0, 2 ** 40, l[5] as Buffer, proof)).to.equal(undefined);
  });
});
