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

/**
 * Writes operations on sublevels of `db` atomically, like `db.batch(ops)`,
 * with the keys prefixed and the values encoded here and handed straight to
 * the store's batch (abstract-level's private API for implementations). The
 * public `batch()` copies and re-validates every operation and runs hooks and
 * events this code never uses: on the agent's hot paths (a record, its index
 * entries and ledger entries per exchange) that cost more than LevelDB itself.
 * Keys are strings; values go through the sublevel's own encoding, so the
 * sublevel reads them back as if `batch()` had written them.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function writeBatch(db: AbstractLevel<any, any, any>, ops: readonly SublevelOp[], options: { sync?: boolean } = {}): Promise<void> {
  if (ops.length === 0) return;
  if (db.status !== 'open') {
    await db.batch(ops as never, options as never);
    return;
  }
  const encoded = new Array<object>(ops.length);
  for (let i = 0; i < ops.length; i += 1) {
    const op = ops[i] as SublevelOp;
    if (typeof op.key !== 'string') throw new TypeError('writeBatch keys must be strings');
    const key = `${op.sublevel.prefix as string}${op.key}`;
    if (op.type === 'put') {
      if (op.value === undefined || op.value === null) throw new TypeError('writeBatch values must not be null or undefined');
      const encoding = op.sublevel.valueEncoding() as { encode(v: unknown): unknown; format: string };
      encoded[i] = { type: 'put', key, keyEncoding: 'utf8', value: encoding.encode(op.value), valueEncoding: encoding.format };
    } else if (op.type === 'del') encoded[i] = { type: 'del', key, keyEncoding: 'utf8' };
    else throw new TypeError("writeBatch operations are 'put' or 'del'");
  }
  await (db as unknown as { _batch(ops: object[], options: object): Promise<void> })._batch(encoded, options);
}
