import { hash, timingSafeEqual } from 'node:crypto';

/**
 * Merkle trees as RFC 9162 (Certificate Transparency 2.0) section 2.1
 * defines them: leaf hash SHA-256(0x00 || data), node hash SHA-256(0x01 ||
 * left || right), an unbalanced tree split at the largest power of two below
 * its size. Used for the per-feed log trees (incrementally, from stored
 * nodes) and for the agent's batch receipts (in memory).
 *
 * Sizes and indexes are JavaScript numbers, so arithmetic here divides
 * instead of shifting (shifts are 32-bit); every size, index and proof
 * length given to a verifier is treated as hostile.
 */

/** Largest tree size (and leaf count) this module accepts: 2^52, far above any feed. */
export const MAX_LOG_SIZE = 2 ** 52;
/** Bytes of every hash. */
export const HASH_BYTES = 32;
/** Longest inclusion proof for a tree of at most {@link MAX_LOG_SIZE} leaves. */
export const MAX_INCLUSION_PROOF = 52;
/** Longest consistency proof for trees of at most {@link MAX_LOG_SIZE} leaves. */
export const MAX_CONSISTENCY_PROOF = 2 * 52;

const LEAF = Buffer.of(0);
const NODE = Buffer.of(1);

/** SHA-256 of the empty string: the root of the empty tree. */
export const EMPTY_ROOT: Buffer = hash('sha256', Buffer.alloc(0), 'buffer');

/** The hash of a leaf's data. */
export function leafHash(data: Uint8Array): Buffer {
  return hash('sha256', Buffer.concat([LEAF, data]), 'buffer');
}

/** The hash of an interior node. */
export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  return hash('sha256', Buffer.concat([NODE, left, right]), 'buffer');
}

const isSize = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= 0 && (n as number) <= MAX_LOG_SIZE;
const isHash = (b: unknown): b is Buffer => Buffer.isBuffer(b) && b.length === HASH_BYTES;
const odd = (n: number): boolean => n % 2 === 1;
const half = (n: number): number => Math.floor(n / 2);

/** k when n = 2^k, else undefined. */
function log2Exact(n: number): number | undefined {
  if (n < 1) return undefined;
  let k = 0;
  while (n > 1) {
    if (odd(n)) return undefined;
    n /= 2;
    k += 1;
  }
  return k;
}

/** Constant-time comparison of two hashes; false for anything that is not a 32-byte buffer. */
export function hashesEqual(a: unknown, b: unknown): boolean {
  return isHash(a) && isHash(b) && timingSafeEqual(a, b);
}

/** The largest power of two strictly below `n` (n >= 2). */
export function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

// ---- in-memory trees (receipt batches) ------------------------------------

/**
 * Every level of the tree, leaves first, root last. Pairing neighbours level
 * by level, with an odd last node carried up unhashed, builds exactly the
 * RFC 9162 tree (split at the largest power of two).
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
  const p = proofsOf(levels(leaves))[index];
  if (!p) throw new TypeError('leaf index out of range');
  return p;
}

/** The root and the inclusion proof of every leaf, from one pass over the tree. */
export function merkleTree(leaves: readonly Buffer[]): { root: Buffer; proofs: Buffer[][] } {
  const all = levels(leaves);
  return { root: (all.at(-1) as Buffer[])[0] as Buffer, proofs: proofsOf(all) };
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

// ---- verification (RFC 9162 2.1.3.2 and 2.1.4.2) --------------------------

/**
 * The root an inclusion proof leads to from `leaf` at `index` in a tree of
 * `size` leaves (RFC 9162 section 2.1.3.2), or undefined when the inputs do
 * not fit: index outside [0, size), a proof element that is not 32 bytes, a
 * proof longer or shorter than that position needs. Compare the result with
 * a signed root (or use {@link verifyInclusion}).
 */
export function rootFromInclusionProof(index: unknown, size: unknown, leaf: unknown, proof: unknown): Buffer | undefined {
  if (!isSize(size) || size < 1 || !Number.isSafeInteger(index) || (index as number) < 0 || (index as number) >= size) return undefined;
  if (!isHash(leaf) || !Array.isArray(proof) || proof.length > MAX_INCLUSION_PROOF) return undefined;
  let fn = index as number;
  let sn = size - 1;
  let r: Buffer = leaf;
  for (const p of proof as unknown[]) {
    if (!isHash(p) || sn === 0) return undefined;
    if (odd(fn) || fn === sn) {
      r = nodeHash(p, r);
      if (!odd(fn)) {
        while (!odd(fn) && fn !== 0) {
          fn = half(fn);
          sn = half(sn);
        }
      }
    } else r = nodeHash(r, p);
    fn = half(fn);
    sn = half(sn);
  }
  return sn === 0 ? r : undefined;
}

/** True when `proof` shows `leaf` (a leaf hash) at `index` in the tree of `size` leaves whose root is `root`. */
export function verifyInclusion(index: unknown, size: unknown, leaf: unknown, proof: unknown, root: unknown): boolean {
  const r = rootFromInclusionProof(index, size, leaf, proof);
  return r !== undefined && hashesEqual(r, root);
}

/**
 * True when `proof` shows the tree of `size1` leaves with root `root1` is a
 * prefix of the tree of `size2` leaves with root `root2` (RFC 9162 section
 * 2.1.4.2). Equal sizes need an empty proof and equal roots; size1 = 0 is
 * consistent with anything (empty proof); size1 > size2 never is.
 */
export function verifyConsistency(size1: unknown, size2: unknown, proof: unknown, root1: unknown, root2: unknown): boolean {
  if (!isSize(size1) || !isSize(size2) || size1 > size2 || !Array.isArray(proof) || proof.length > MAX_CONSISTENCY_PROOF) return false;
  if (!(proof as unknown[]).every(isHash)) return false;
  const path = proof as Buffer[];
  if (size1 === size2) return path.length === 0 && hashesEqual(root1, root2);
  if (size1 === 0) return path.length === 0;
  if (path.length === 0 || !isHash(root1) || !isHash(root2)) return false;
  // Step 2: when size1 is a power of two, its root is the first node of the path.
  const nodes = log2Exact(size1) !== undefined ? [root1, ...path] : path;
  let fn = size1 - 1;
  let sn = size2 - 1;
  while (odd(fn)) {
    fn = half(fn);
    sn = half(sn);
  }
  let fr = nodes[0] as Buffer;
  let sr = fr;
  for (const c of nodes.slice(1)) {
    if (sn === 0) return false;
    if (odd(fn) || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (!odd(fn)) {
        while (!odd(fn) && fn !== 0) {
          fn = half(fn);
          sn = half(sn);
        }
      }
    } else sr = nodeHash(sr, c);
    fn = half(fn);
    sn = half(sn);
  }
  return sn === 0 && hashesEqual(fr, root1) && hashesEqual(sr, root2);
}

// ---- log trees from stored nodes -------------------------------------------

/**
 * Reads the hash of the perfect subtree at `level` and `index`, covering
 * leaves [index * 2^level, (index + 1) * 2^level): every such node of a
 * complete subtree is stored, so any subtree hash is a few reads.
 */
export type NodeReader = (level: number, index: number) => Promise<Buffer>;

/** The perfect subtrees a tree of `size` leaves is made of, largest (leftmost) first: its compact range. */
export function compactRangeNodes(size: number): Array<{ level: number; index: number }> {
  const out: Array<{ level: number; index: number }> = [];
  let start = 0;
  for (let level = 52; level >= 0; level--) {
    const width = 2 ** level;
    if (size - start >= width) {
      out.push({ level, index: start / width });
      start += width;
    }
  }
  return out;
}

/** The root of a tree from its compact range (hashes largest subtree first). */
export function rootFromCompactRange(range: readonly Buffer[]): Buffer {
  if (range.length === 0) return EMPTY_ROOT;
  let r = range[range.length - 1] as Buffer;
  for (let i = range.length - 2; i >= 0; i--) r = nodeHash(range[i] as Buffer, r);
  return r;
}

/** A stored node: a perfect subtree's hash. */
export interface TreeNode {
  level: number;
  index: number;
  hash: Buffer;
}

/**
 * Appends leaf hashes to a tree of `size` leaves given by its compact range;
 * returns the new compact range and every node completed on the way (the
 * leaves themselves at level 0): O(log n) work per leaf.
 */
export function appendToRange(size: number, range: readonly Buffer[], leaves: readonly Buffer[]): { range: Buffer[]; nodes: TreeNode[] } {
  const out = range.slice();
  const nodes: TreeNode[] = [];
  let n = size;
  for (const leaf of leaves) {
    let h = leaf;
    let level = 0;
    let index = n;
    nodes.push({ level, index, hash: h });
    while (odd(index)) {
      h = nodeHash(out.pop() as Buffer, h);
      level += 1;
      index = half(index);
      nodes.push({ level, index, hash: h });
    }
    out.push(h);
    n += 1;
  }
  return { range: out, nodes };
}

/**
 * Appends one leaf hash to a compact range in place (no nodes kept): for
 * readers that rebuild a tree to compare roots, e.g. offline verification.
 */
export function pushLeaf(range: Buffer[], size: number, leaf: Buffer): void {
  let h = leaf;
  for (let index = size; odd(index); index = half(index)) h = nodeHash(range.pop() as Buffer, h);
  range.push(h);
}

/** Hash of leaves [start, end) of a tree, from stored perfect subtrees (memoized per proof). */
async function subtreeHash(read: NodeReader, start: number, end: number): Promise<Buffer> {
  const width = end - start;
  const level = log2Exact(width);
  if (level !== undefined && start % width === 0) return read(level, start / width);
  const k = splitPoint(width);
  return nodeHash(await subtreeHash(read, start, start + k), await subtreeHash(read, start + k, end));
}

function memo(read: NodeReader): NodeReader {
  const cache = new Map<string, Promise<Buffer>>();
  return (level, index) => {
    const key = `${level}/${index}`;
    let p = cache.get(key);
    if (!p) cache.set(key, (p = read(level, index)));
    return p;
  };
}

/** PATH(index, D[size]) (RFC 9162 2.1.3.1) from stored nodes. */
export async function inclusionPath(read: NodeReader, index: number, size: number): Promise<Buffer[]> {
  if (!isSize(size) || !Number.isSafeInteger(index) || index < 0 || index >= size) throw new RangeError(`no leaf ${index} in a tree of ${size}`);
  const r = memo(read);
  const out: Buffer[] = [];
  const path = async (m: number, start: number, end: number): Promise<void> => {
    if (end - start <= 1) return;
    const k = splitPoint(end - start);
    if (m < k) {
      await path(m, start, start + k);
      out.push(await subtreeHash(r, start + k, end));
    } else {
      await path(m - k, start + k, end);
      out.push(await subtreeHash(r, start, start + k));
    }
  };
  await path(index, 0, size);
  return out;
}

/** PROOF(size1, D[size2]) (RFC 9162 2.1.4.1) from stored nodes. */
export async function consistencyPath(read: NodeReader, size1: number, size2: number): Promise<Buffer[]> {
  if (!isSize(size1) || !isSize(size2) || size1 > size2) throw new RangeError(`no consistency proof from ${size1} to ${size2}`);
  if (size1 === 0 || size1 === size2) return [];
  const r = memo(read);
  const out: Buffer[] = [];
  const sub = async (m: number, start: number, end: number, whole: boolean): Promise<void> => {
    if (m === end - start) {
      if (!whole) out.push(await subtreeHash(r, start, end));
      return;
    }
    const k = splitPoint(end - start);
    if (m <= k) {
      await sub(m, start, start + k, whole);
      out.push(await subtreeHash(r, start + k, end));
    } else {
      await sub(m - k, start + k, end, false);
      out.push(await subtreeHash(r, start, start + k));
    }
  };
  await sub(size1, 0, size2, true);
  return out;
}

/** The root of the first `size` leaves, from stored nodes. */
export async function rootAt(read: NodeReader, size: number): Promise<Buffer> {
  if (!isSize(size)) throw new RangeError(`bad tree size ${size}`);
  if (size === 0) return EMPTY_ROOT;
  return subtreeHash(memo(read), 0, size);
}
