import { LedgerError } from './errors.ts';
import { appendToRange, compactRangeNodes, HASH_BYTES, leafHash, type NodeReader, type TreeNode } from './merkle.ts';
import { isSealed, readSealed } from './sealed.ts';
import { feedKey, seqKey, type BatchOp, type Store } from './store.ts';

/**
 * A feed's Merkle tree in LevelDB: every node of a complete (perfect)
 * subtree is stored once, when its last leaf is appended, in the same atomic
 * batch as the entry; leaf i is the leaf hash of the exact stored bytes of
 * entry seq i. So an append writes O(log n) nodes, and any root, inclusion or
 * consistency proof is O(log n) reads; the compact range (the perfect
 * subtrees of the current size) is kept in memory.
 */

/** Leaves hashed per batch when building the tree of an existing feed. */
export const TREE_BUILD_BATCH = 2048;

/** Key of the node at `level` covering leaves [index * 2^level, (index + 1) * 2^level) of `feed`. */
export function nodeKey(feed: string, level: number, index: number): string {
  return `${feed}!${level.toString().padStart(2, '0')}!${seqKey(index)}`;
}

/** The in-memory state of one feed's tree. */
export interface FeedTree {
  size: number;
  range: Buffer[];
}

/** Reads stored nodes of `feed`; a missing node is a damaged database. */
export function nodeReader(store: Store, feed: string): NodeReader {
  return async (level, index) => {
    const h = await store.tree.get(nodeKey(feed, level, index));
    if (h === undefined || h.length !== HASH_BYTES)
      throw new LedgerError('ERR_LEDGER_DB_UNREADABLE', `Merkle node ${level}/${index} of ${feed} is missing or damaged`);
    return h;
  };
}

/** Number of leaves stored for `feed` (0 when it has no tree yet). */
export async function storedTreeSize(store: Store, feed: string): Promise<number> {
  const prefix = `${feed}!00!`;
  for await (const k of store.tree.keys({ gte: prefix, lt: `${feed}!00"`, reverse: true, limit: 1 })) return Number(k.slice(prefix.length)) + 1;
  return 0;
}

/** Loads the compact range of `feed` at `size` from stored nodes. */
export async function loadTree(store: Store, feed: string, size: number): Promise<FeedTree> {
  const read = nodeReader(store, feed);
  const range: Buffer[] = [];
  for (const n of compactRangeNodes(size)) range.push(await read(n.level, n.index));
  return { size, range };
}

/** The batch ops that store `nodes` of `feed`. */
export function nodeOps(store: Store, feed: string, nodes: readonly TreeNode[]): BatchOp[] {
  return nodes.map((n) => ({ type: 'put', sublevel: store.tree, key: nodeKey(feed, n.level, n.index), value: n.hash }));
}

/** Appends the entries' bytes (seqs tree.size, tree.size + 1, ...) to the tree: the new state and the ops to store it. */
export function growTree(
  store: Store,
  feed: string,
  tree: FeedTree,
  entryBytes: readonly Buffer[],
  leaves: readonly Buffer[] = entryBytes.map(leafOf),
): { tree: FeedTree; ops: BatchOp[] } {
  const { range, nodes } = appendToRange(tree.size, tree.range, leaves);
  return { tree: { size: tree.size + leaves.length, range }, ops: nodeOps(store, feed, nodes) };
}

/** The leaf hash of stored bytes: of the entry, or the one a sealed record carries (sealed.ts). */
export function leafOf(bytes: Buffer): Buffer {
  return isSealed(bytes) ? Buffer.from(readSealed(bytes).leaf, 'hex') : leafHash(bytes);
}

/**
 * Brings the stored tree of `feed` up to `size` leaves (a feed written
 * before trees existed, or an interrupted build), reading the entries'
 * stored bytes and writing nodes in bounded batches; entries are never
 * rewritten. Idempotent: a crash mid-way resumes from the last stored leaf.
 */
export async function buildTree(store: Store, feed: string, size: number): Promise<FeedTree> {
  const have = await storedTreeSize(store, feed);
  if (have > size) throw new LedgerError('ERR_LEDGER_DB_UNREADABLE', `the Merkle tree of ${feed} has ${have} leaves, its feed ${size} entries`);
  let tree = await loadTree(store, feed, have);
  while (tree.size < size) {
    const to = Math.min(size, tree.size + TREE_BUILD_BATCH) - 1;
    const bytes: Buffer[] = [];
    for await (const v of store.entries.values({ gte: feedKey(feed, tree.size), lte: feedKey(feed, to) })) bytes.push(v);
    if (bytes.length !== to - tree.size + 1)
      throw new LedgerError('ERR_LEDGER_DB_UNREADABLE', `entries of ${feed} from ${tree.size} to ${to} are not all stored`);
    const grown = growTree(store, feed, tree, bytes);
    await store.batch(grown.ops);
    tree = grown.tree;
  }
  return tree;
}
