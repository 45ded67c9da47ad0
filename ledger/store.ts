import { Level } from 'level';
import type { AbstractSublevel } from 'abstract-level';
import { writeBatch } from './batch.ts';
import { LedgerError } from './errors.ts';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Sub<V> = AbstractSublevel<any, any, string, V>;

/** One put or del of an atomic batch, on a sublevel. */
export interface BatchOp {
  type: 'put' | 'del';
  sublevel: Sub<string> | Sub<Buffer>;
  key: string;
  value?: string | Buffer;
}

/** Sublevel names (short: they prefix every key). */
export const SUBLEVELS = {
  entries: 'e',
  heads: 'h',
  signedHeads: 's',
  byExchange: 'x',
  byConsent: 'c',
  byType: 't',
  evidence: 'q',
  checkpoints: 'k',
  tree: 'm',
  notes: 'n',
  witness: 'w',
} as const;

/**
 * Parses a JSON value read from the store, and checks it with `check` when
 * given; a value that is not JSON or fails the check is a damaged database
 * (ERR_LEDGER_DB_UNREADABLE), not a SyntaxError.
 */
export function readStoredJson<T>(value: string, what: string, check?: (v: unknown) => v is T): T {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch (err) {
    throw new LedgerError('ERR_LEDGER_DB_UNREADABLE', `stored ${what} is not JSON`, { cause: err });
  }
  if (check && !check(parsed)) throw new LedgerError('ERR_LEDGER_DB_UNREADABLE', `stored ${what} is malformed`);
  return parsed as T;
}

/** Fixed-width decimal so keys sort in seq order. */
export function seqKey(seq: number): string {
  return seq.toString().padStart(16, '0');
}

/** Key of entry `seq` of `feed` (feed ids never contain `!`). */
export function feedKey(feed: string, seq: number): string {
  return `${feed}!${seqKey(seq)}`;
}

/** Iterator bounds covering every key that starts with `prefix!`. */
export function prefixRange(prefix: string): { gte: string; lt: string } {
  return { gte: `${prefix}!`, lt: `${prefix}"` };
}

/** The LevelDB database of a ledger and its sublevels. */
export class Store {
  readonly entries: Sub<Buffer>;
  readonly heads: Sub<string>;
  readonly signedHeads: Sub<string>;
  readonly byExchange: Sub<string>;
  readonly byConsent: Sub<string>;
  readonly byType: Sub<string>;
  readonly evidence: Sub<string>;
  readonly checkpoints: Sub<string>;
  /** Merkle tree nodes of every feed: `<feed>!<level, 2 digits>!<index, 16 digits>` -> 32-byte hash (see tree.ts). */
  readonly tree: Sub<Buffer>;
  /** Signed checkpoint notes of every feed by its author: `<feed>!<tree size, 16 digits>` -> note text. */
  readonly notes: Sub<string>;
  /** Witness state (see witness.ts): last checkpoint cosigned per feed, checkpoints with their cosignatures, split-view and rollback evidence. */
  readonly witness: Sub<string>;

  private constructor(readonly db: Level<string, string>) {
    this.entries = db.sublevel<string, Buffer>(SUBLEVELS.entries, { valueEncoding: 'buffer' }) as unknown as Sub<Buffer>;
    this.heads = db.sublevel<string, string>(SUBLEVELS.heads, {}) as unknown as Sub<string>;
    this.signedHeads = db.sublevel<string, string>(SUBLEVELS.signedHeads, {}) as unknown as Sub<string>;
    this.byExchange = db.sublevel<string, string>(SUBLEVELS.byExchange, {}) as unknown as Sub<string>;
    this.byConsent = db.sublevel<string, string>(SUBLEVELS.byConsent, {}) as unknown as Sub<string>;
    this.byType = db.sublevel<string, string>(SUBLEVELS.byType, {}) as unknown as Sub<string>;
    this.evidence = db.sublevel<string, string>(SUBLEVELS.evidence, {}) as unknown as Sub<string>;
    this.checkpoints = db.sublevel<string, string>(SUBLEVELS.checkpoints, {}) as unknown as Sub<string>;
    this.tree = db.sublevel<string, Buffer>(SUBLEVELS.tree, { valueEncoding: 'buffer' }) as unknown as Sub<Buffer>;
    this.notes = db.sublevel<string, string>(SUBLEVELS.notes, {}) as unknown as Sub<string>;
    this.witness = db.sublevel<string, string>(SUBLEVELS.witness, {}) as unknown as Sub<string>;
  }

  /** Opens (or creates) the database at `path`. */
  static async open(path: string, options: { createIfMissing?: boolean } = {}): Promise<Store> {
    const db = new Level<string, string>(path, { valueEncoding: 'utf8', createIfMissing: options.createIfMissing ?? true });
    try {
      await db.open();
    } catch (err) {
      const why = (err as { cause?: Error }).cause?.message ?? (err as Error).message;
      throw new LedgerError('ERR_LEDGER_DB_UNREADABLE', `cannot open ledger database at ${path}: ${why.split('\n')[0]}`, { cause: err });
    }
    return new Store(db);
  }

  /** Writes every op atomically. */
  async batch(ops: BatchOp[]): Promise<void> {
    await writeBatch(this.db, ops);
  }

  async close(): Promise<void> {
    await this.db.close();
  }
}
