/**
 * The agent's state database (`<dataDir>/state`, LevelDB): it owns the
 * database, hands each table its sublevel, and writes atomic batches,
 * synced ones with group commit (writes that arrive while one is on its way
 * to disk go together in the next, with one fsync).
 */
import { Level } from 'level';
import { writeBatch, type SublevelOp } from '../../ledger/index.ts';

/** One put or del of an atomic batch, on a table (sublevel) of the state database. */
export type BatchOp = SublevelOp;

/** Value encodings the tables use. */
type Encoding = 'json' | 'utf8' | 'buffer';

/** See the module comment. */
export class StateDb {
  private readonly db: Level<string, string>;
  /** Synced writes waiting for the one in progress: they go to disk together, with one fsync (group commit). */
  private syncQueue: Array<{ ops: BatchOp[]; resolve: () => void; reject: (err: unknown) => void }> = [];
  private syncing = false;

  constructor(path: string) {
    this.db = new Level<string, string>(path);
  }

  /** The sublevel of table `name`. */
  table<V>(name: string, valueEncoding: Encoding) {
    return this.db.sublevel<string, V>(name, { valueEncoding });
  }

  async open(): Promise<void> {
    await this.db.open();
  }

  async close(): Promise<void> {
    await this.db.close();
  }

  /** Writes `ops` atomically (not synced: a crash may lose the last writes, never half of one). */
  write(ops: BatchOp[]): Promise<void> {
    return writeBatch(this.db, ops);
  }

  /**
   * Writes `ops` atomically and durably (LevelDB `sync`: fsynced before this
   * resolves). Writes that arrive while one is on its way to disk wait for it
   * and then go together in one batch with one fsync: under load the cost of
   * the fsync is shared; alone, a write goes at once.
   */
  writeSynced(ops: BatchOp[]): Promise<void> {
    return new Promise((resolve, reject) => {
      this.syncQueue.push({ ops, resolve, reject });
      if (!this.syncing) void this.drainSynced();
    });
  }

  private async drainSynced(): Promise<void> {
    this.syncing = true;
    try {
      while (this.syncQueue.length > 0) {
        const group = this.syncQueue;
        this.syncQueue = [];
        try {
          await writeBatch(
            this.db,
            group.flatMap((g) => g.ops),
            { sync: true },
          );
          for (const g of group) g.resolve();
        } catch (err) {
          // One write of the group may be at fault: retry each alone, so the others still land.
          if (group.length === 1) (group[0] as (typeof group)[number]).reject(err);
          else {
            for (const g of group) {
              await writeBatch(this.db, g.ops, { sync: true }).then(g.resolve, g.reject);
            }
          }
        }
      }
    } finally {
      this.syncing = false;
    }
  }
}
