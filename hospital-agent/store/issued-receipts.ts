/**
 * Receipts this agent issued for the exchanges it received, by sender and
 * exchange id, so a resent exchange is answered with its receipt, never
 * delivered twice.
 */
import type { BatchOp, StateDb } from './state-db.ts';

function keyOf(from: string, id: string): string {
  return `${from}!${id}`;
}

/** See the module comment. */
export class IssuedReceipts {
  private readonly table;

  constructor(db: StateDb) {
    this.table = db.table<unknown>('issued-receipts', 'json');
  }

  /** The receipt issued for `from`'s exchange `id`, if any. */
  get(from: string, id: string): Promise<unknown> {
    return this.table.get(keyOf(from, id));
  }

  /** The receipts issued for `from`'s exchanges (undefined where none), in one read. */
  getMany(from: string, ids: readonly string[]): Promise<unknown[]> {
    return this.table.getMany(ids.map((id) => keyOf(from, id)));
  }

  /** Keeps a receipt issued for `from`'s exchange `id`. */
  async save(from: string, id: string, receipt: unknown): Promise<void> {
    await this.table.put(keyOf(from, id), receipt);
  }

  /** The batch operation that keeps a receipt (written with what it answers for). */
  putOp(from: string, id: string, receipt: unknown): BatchOp {
    return { type: 'put', key: keyOf(from, id), value: receipt, sublevel: this.table };
  }
}
