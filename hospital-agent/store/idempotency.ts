/**
 * The Idempotency-Key index of outgoing exchanges: which exchange a key of
 * a principal (an API token) created. Keys are stored hashed with their
 * principal; creations under one key are serialized.
 */
import { createHash } from 'node:crypto';
import type { BatchOp, StateDb } from './state-db.ts';

/** The index key of `key` used by `principal`. */
export function idempotencyIndexKey(principal: string, key: string): string {
  return createHash('sha256').update(`${principal}\u0000${key}`).digest('hex');
}

/** See the module comment. */
export class IdempotencyIndex {
  private readonly table;
  /** Creations with an Idempotency-Key, serialized per key (other creations need no lock: their ids are new). */
  private readonly keyLocks = new Map<string, Promise<unknown>>();

  constructor(db: StateDb) {
    this.table = db.table<string>('idempotency', 'utf8');
  }

  /** The exchange id an index key points to, if any. */
  lookup(indexKey: string): Promise<string | undefined> {
    return this.table.get(indexKey);
  }

  /** The batch operation that points `indexKey` at exchange `id` (written with the exchange). */
  putOp(indexKey: string, id: string): BatchOp {
    return { type: 'put', key: indexKey, value: id, sublevel: this.table };
  }

  /** Runs `fn` after every earlier call with the same key has settled. */
  serialized<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const run = (this.keyLocks.get(key) ?? Promise.resolve()).then(fn, fn);
    const tail = run.catch(() => undefined);
    this.keyLocks.set(key, tail);
    void tail.then(() => {
      if (this.keyLocks.get(key) === tail) this.keyLocks.delete(key);
    });
    return run;
  }
}
