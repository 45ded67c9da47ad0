/**
 * The agent's state, opened as one: the state database and its tables
 * (outgoing exchanges, their Idempotency-Key index, issued receipts,
 * records requests, small received inbox items).
 */
import { ExchangeStore } from './exchanges.ts';
import { IdempotencyIndex } from './idempotency.ts';
import { InlineInbox } from './inline-inbox.ts';
import { IssuedReceipts } from './issued-receipts.ts';
import { RecordsRequests } from './requests.ts';
import { StateDb } from './state-db.ts';

/** See the module comment. */
export class StateStore {
  readonly db: StateDb;
  readonly exchanges: ExchangeStore;
  readonly receipts: IssuedReceipts;
  readonly requests: RecordsRequests;
  readonly inbox: InlineInbox;

  constructor(path: string) {
    this.db = new StateDb(path);
    this.exchanges = new ExchangeStore(this.db, new IdempotencyIndex(this.db));
    this.receipts = new IssuedReceipts(this.db);
    this.requests = new RecordsRequests(this.db);
    this.inbox = new InlineInbox(this.db, this.receipts);
  }

  /** Opens the database and loads what the tables keep in memory. */
  async open(): Promise<void> {
    await this.db.open();
    await this.exchanges.load();
  }

  async close(): Promise<void> {
    await this.db.close();
  }
}
