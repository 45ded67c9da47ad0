import type { AbstractLevel } from 'abstract-level';

/** One put or del on a sublevel, for {@link writeBatch}. */
export interface SublevelOp {
  type: 'put' | 'del';
  /** A sublevel of the database written to (its key prefix and value encoding apply). */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  sublevel: any;
  key: string;
  value?: unknown;
}

const KEY_UTF8 = Object.freeze({ keyEncoding: 'utf8' });
const PUT_OPTIONS = new Map<string, object>();

/** The (shared) options of a put whose value is already encoded in `format`. */
function putOptions(format: string): object {
  let o = PUT_OPTIONS.get(format);
  if (!o) PUT_OPTIONS.set(format, (o = Object.freeze({ keyEncoding: 'utf8', valueEncoding: format })));
  return o;
}

/**
 * Writes operations on sublevels of `db` atomically, like `db.batch(ops)`,
 * through abstract-level's public chained batch, with the keys prefixed and
 * the values encoded here: a put is then one call with a string key, an
 * encoded value and a shared options object, where `batch(ops)` copies and
 * re-validates every operation and the store's array batch reads five
 * properties of each through N-API (on the agent's hot paths, a record, its
 * index entries and ledger entries per exchange, that cost more than LevelDB
 * itself). Keys are strings; values go through the sublevel's own encoding
 * (its public `valueEncoding()`), so the sublevel reads them back as if
 * `batch()` had written them. An invalid operation throws before anything is
 * written: nothing reaches the store before `write()`.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function writeBatch(db: AbstractLevel<any, any, any>, ops: readonly SublevelOp[], options: { sync?: boolean } = {}): Promise<void> {
  if (ops.length === 0) return;
  if (db.status !== 'open') {
    await db.batch(ops as never, options as never);
    return;
  }
  const batch = db.batch();
  try {
    for (const op of ops) {
      if (typeof op.key !== 'string') throw new TypeError('writeBatch keys must be strings');
      const key = `${op.sublevel.prefix as string}${op.key}`;
      if (op.type === 'put') {
        if (op.value === undefined || op.value === null) throw new TypeError('writeBatch values must not be null or undefined');
        const encoding = op.sublevel.valueEncoding() as { encode(v: unknown): unknown; format: string };
        batch.put(key, encoding.encode(op.value), putOptions(encoding.format));
      } else if (op.type === 'del') batch.del(key, KEY_UTF8);
      else throw new TypeError("writeBatch operations are 'put' or 'del'");
    }
    await batch.write(options);
  } finally {
    // Closes a batch an invalid operation left open; after write() it is a no-op.
    await batch.close();
  }
}
