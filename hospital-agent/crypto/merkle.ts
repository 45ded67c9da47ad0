import { MAX_LOG_SIZE, rootFromInclusionProof } from '../../ledger/merkle.ts';

/**
 * Merkle trees for batch receipts: the RFC 9162 code lives in the ledger
 * (ledger/merkle.ts), which also keeps a tree per feed; this module keeps the
 * receipts' names and their size bound.
 */
export { leafHash, merkleRoot, inclusionProof, merkleTree } from '../../ledger/merkle.ts';

/** Most leaves a receipt batch tree may have (bounds the work a hostile proof can ask for). */
export const MAX_TREE_SIZE = 1 << 16;

/**
 * The root an inclusion proof leads to from `leaf` at `index` in a tree of
 * `size` leaves (RFC 9162 section 2.1.3.2), or undefined when the proof does
 * not fit that position and size. Compare the result with a signed root.
 */
export function rootFromProof(index: number, size: number, leaf: Buffer, proof: readonly Buffer[]): Buffer | undefined {
  if (!Number.isInteger(size) || size > MAX_TREE_SIZE || size > MAX_LOG_SIZE) return undefined;
  return rootFromInclusionProof(index, size, leaf, proof);
}
