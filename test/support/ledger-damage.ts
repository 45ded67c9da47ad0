import { readdirSync, statSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { decodeEntry } from '../../ledger/index.ts';
import { feedKey, prefixRange, Store, type BatchOp } from '../../ledger/store.ts';

/**
 * Damages a closed ledger database as a lost disk tail would: every record
 * of `feed` from entry `keep` on (entries, indexes, signed heads, Merkle
 * nodes that cover a lost leaf, checkpoints of a larger tree unless
 * `keepNotes`) is deleted and the head moved back to entry `keep - 1`.
 */
export async function dropTail(path: string, feed: string, keep: number, options: { keepNotes?: boolean } = {}): Promise<void> {
  if (keep < 1) throw new TypeError('keep at least the genesis entry');
  const store = await Store.open(path, { createIfMissing: false });
  try {
    const ops: BatchOp[] = [];
    const seqOf = (key: string): number => Number(key.slice(key.lastIndexOf('!') + 1));
    for await (const k of store.entries.keys({ gte: feedKey(feed, keep), lt: `${feed}"` })) ops.push({ type: 'del', sublevel: store.entries, key: k });
    for await (const k of store.signedHeads.keys({ gte: feedKey(feed, keep), lt: `${feed}"` })) ops.push({ type: 'del', sublevel: store.signedHeads, key: k });
    if (!options.keepNotes)
      for await (const k of store.notes.keys({ gt: feedKey(feed, keep), lt: `${feed}"` })) ops.push({ type: 'del', sublevel: store.notes, key: k });
    for (const index of [store.byType, store.byExchange, store.byConsent]) {
      // Index keys end with `<feed>!<seq>`.
      for await (const k of index.keys()) if (k.split('!').at(-2) === feed && seqOf(k) >= keep) ops.push({ type: 'del', sublevel: index, key: k });
    }
    for await (const k of store.tree.keys(prefixRange(feed))) {
      const [, level, index] = k.split('!');
      if ((Number(index) + 1) * 2 ** Number(level) > keep) ops.push({ type: 'del', sublevel: store.tree, key: k });
    }
    const last = await store.entries.get(feedKey(feed, keep - 1));
    if (!last) throw new Error(`no entry ${feed}:${keep - 1}`);
    const { entry, hash } = decodeEntry(last);
    ops.push({ type: 'put', sublevel: store.heads, key: feed, value: JSON.stringify({ seq: entry.seq, hash, ts: entry.ts }) });
    await store.batch(ops);
  } finally {
    await store.close();
  }
}

/**
 * Changes one hex digit of stored entry `feed:seq` in a closed database (as a
 * peer serving a forged entry would): the bytes stay a well-formed entry,
 * with another hash.
 */
export async function alterEntry(path: string, feed: string, seq: number): Promise<void> {
  const store = await Store.open(path, { createIfMissing: false });
  try {
    const bytes = await store.entries.get(feedKey(feed, seq));
    if (!bytes) throw new Error(`no entry ${feed}:${seq}`);
    const text = bytes.toString('utf8');
    const m = /[0-9a-f]{64}/.exec(text.slice(text.indexOf('"body"')));
    if (!m) throw new Error(`entry ${feed}:${seq} has no hash in its body`);
    const at = text.indexOf('"body"') + m.index;
    const altered = text.slice(0, at) + (text[at] === '0' ? '1' : '0') + text.slice(at + 1);
    await store.batch([{ type: 'put', sublevel: store.entries, key: feedKey(feed, seq), value: Buffer.from(altered, 'utf8') }]);
  } finally {
    await store.close();
  }
}

/**
 * Cuts the newest LevelDB write-ahead log of the database at `dir` to
 * `fraction` of its size, as a disk that lost its last writes would leave it
 * (LevelDB drops the torn record and every later one when it next opens).
 */
export function truncateNewestLog(dir: string, fraction: number): { file: string; from: number; to: number } {
  const logs = readdirSync(dir)
    .filter((n) => n.endsWith('.log') && n !== 'LOG')
    .sort();
  const file = logs.at(-1);
  if (!file) throw new Error(`no LevelDB log in ${dir}`);
  const from = statSync(join(dir, file)).size;
  const to = Math.floor(from * fraction);
  truncateSync(join(dir, file), to);
  return { file, from, to };
}
