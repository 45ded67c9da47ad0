import { hash } from 'node:crypto';

/**
 * Merkle trees as RFC 9162 (Certificate Transparency 2.0) section 2.1
 * defines them: leaf hash SHA-256(0x00 || data), node hash SHA-256(0x01 ||
 * left || right), an unbalanced tree split at the largest power of two below
 * its size. One signature over a root vouches for every leaf, and an
 * inclusion proof (a few hashes) shows one leaf is under that root, so a
 * batch of receipts costs one signature and each receipt still verifies
 * alone.
 */

/** Most leaves a tree here may have (bounds the work a hostile proof can ask for). */
export const MAX_TREE_SIZE = 1 << 16;

const LEAF = Buffer.of(0);
const NODE = Buffer.of(1);

/** The hash of a leaf's data. */
export function leafHash(data: Uint8Array): Buffer {
  return hash('sha256', Buffer.concat([LEAF, data]), 'buffer');
}

function nodeHash(left: Buffer, right: Buffer): Buffer {
  return hash('sha256', Buffer.concat([NODE, left, right]), 'buffer');
}

/**
 * Every level of the tree, leaves first, root last. Pairing neighbours level
 * by level, with an odd last node carried up unhashed, builds exactly the
 * RFC 9162 tree (split at the largest power of two): one pass for the root
 * and every proof.
 */
function levels(leaves: readonly Buffer[]): Buffer[][] {
  if (leaves.length === 0) throw new TypeError('a Merkle tree needs at least one leaf');
  const out: Buffer[][] = [leaves.slice()];
  for (let level = out[0] as Buffer[]; level.length > 1;) {
    const up: Buffer[] = [];
    for (let i = 0; i + 1 < level.length; i += 2) up.push(nodeHash(level[i] as Buffer, level[i + 1] as Buffer));
    if (level.length % 2 === 1) up.push(level[level.length - 1] as Buffer);
    out.push(up);
    level = up;
  }
  return out;
}

/** MTH over leaf hashes (at least one). */
export function merkleRoot(leaves: readonly Buffer[]): Buffer {
  return (levels(leaves).at(-1) as Buffer[])[0] as Buffer;
}

/** PATH(index, leaves): the sibling hashes from the leaf up to the root. */
export function inclusionProof(index: number, leaves: readonly Buffer[]): Buffer[] {
  return (
    inclusionProofs(leaves)[index] ??
    (() => {
      throw new TypeError('leaf index out of range');
    })()
  );
}

/** The root and the inclusion proof of every leaf, from one pass over the tree. */
export function merkleTree(leaves: readonly Buffer[]): { root: Buffer; proofs: Buffer[][] } {
  const all = levels(leaves);
  return { root: (all.at(-1) as Buffer[])[0] as Buffer, proofs: proofsOf(all) };
}

function inclusionProofs(leaves: readonly Buffer[]): Buffer[][] {
  return proofsOf(levels(leaves));
}

function proofsOf(all: Buffer[][]): Buffer[][] {
  const n = (all[0] as Buffer[]).length;
  return Array.from({ length: n }, (_, leaf) => {
    const path: Buffer[] = [];
    let i = leaf;
    for (const level of all.slice(0, -1)) {
      const sibling = level[i ^ 1];
      // An odd last node has no sibling on this level: it is carried up as it is.
      if (sibling) path.push(sibling);
      i >>= 1;
    }
    return path;
  });
}

/**
 * The root an inclusion proof leads to from `leaf` at `index` in a tree of
 * `size` leaves (RFC 9162 section 2.1.3.2), or undefined when the proof does
 * not fit that position and size. Compare the result with a signed root.
 */
export function rootFromProof(index: number, size: number, leaf: Buffer, proof: readonly Buffer[]): Buffer | undefined {
  if (!Number.isInteger(size) || size < 1 || size > MAX_TREE_SIZE || !Number.isInteger(index) || index < 0 || index >= size) return undefined;
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) return undefined;
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else r = nodeHash(r, p);
    fn >>= 1;
    sn >>= 1;
  }
  return sn === 0 ? r : undefined;
}
