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

/** The store's own chained batch, driven through abstract-level's private API for implementations. */
interface NativeBatch {
  _put(key: string, value: unknown, options: object): void;
  _del(key: string, options: object): void;
  _write(options: object): Promise<void>;
  close(): Promise<void>;
}

const KEY_UTF8 = { keyEncoding: 'utf8' } as const;
const PUT_OPTIONS = new Map<string, object>();

/** The (shared) options of a put whose value is in `format`. */
function putOptions(format: string): object {
  let o = PUT_OPTIONS.get(format);
  if (!o) PUT_OPTIONS.set(format, (o = Object.freeze({ keyEncoding: 'utf8', valueEncoding: format })));
  return o;
}

/**
 * Writes operations on sublevels of `db` atomically, like `db.batch(ops)`,
 * with the keys prefixed and the values encoded here and handed straight to
 * the store's own chained batch (abstract-level's private API for
 * implementations). The public `batch()` copies and re-validates every
 * operation and runs hooks and events this code never uses, and the store's
 * array batch reads five properties of every operation through N-API: on
 * the agent's hot paths (a record, its index entries and ledger entries per
 * exchange) that cost more than LevelDB itself. Each operation here is one
 * native call with its key and value. Keys are strings; values go through
 * the sublevel's own encoding, so the sublevel reads them back as if
 * `batch()` had written them. An invalid operation throws before anything
 * is written.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function writeBatch(db: AbstractLevel<any, any, any>, ops: readonly SublevelOp[], options: { sync?: boolean } = {}): Promise<void> {
  if (ops.length === 0) return;
  if (db.status !== 'open') {
    await db.batch(ops as never, options as never);
    return;
  }
  // Nothing reaches the store before _write: an invalid operation throws with the batch unwritten.
  const batch = (db as unknown as { _chainedBatch(): NativeBatch })._chainedBatch();
  try {
    for (const op of ops) {
      if (typeof op.key !== 'string') throw new TypeError('writeBatch keys must be strings');
      const key = `${op.sublevel.prefix as string}${op.key}`;
      if (op.type === 'put') {
        if (op.value === undefined || op.value === null) throw new TypeError('writeBatch values must not be null or undefined');
        const encoding = op.sublevel.valueEncoding() as { encode(v: unknown): unknown; format: string };
        batch._put(key, encoding.encode(op.value), putOptions(encoding.format));
      } else if (op.type === 'del') batch._del(key, KEY_UTF8);
      else throw new TypeError("writeBatch operations are 'put' or 'del'");
    }
    await batch._write(options);
  } finally {
    await batch.close();
  }
}
