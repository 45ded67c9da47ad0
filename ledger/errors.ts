/** Error codes raised by the ledger: bad input, bad data from disk or a peer, and misuse of state. */
export type LedgerErrorCode =
  | 'ERR_LEDGER_INVALID_ENTRY'
  | 'ERR_LEDGER_INVALID_ARGUMENT'
  | 'ERR_LEDGER_CLOSED'
  | 'ERR_LEDGER_READ_ONLY'
  | 'ERR_LEDGER_ENTRY_TOO_LARGE'
  | 'ERR_LEDGER_CHAIN_BROKEN'
  | 'ERR_LEDGER_SEQ'
  | 'ERR_LEDGER_BAD_SIGNATURE'
  | 'ERR_LEDGER_UNKNOWN_KEY'
  | 'ERR_LEDGER_KEY_BUNDLE'
  | 'ERR_LEDGER_KEY_MISMATCH'
  | 'ERR_LEDGER_EQUIVOCATION'
  | 'ERR_LEDGER_FEED_STOPPED'
  | 'ERR_LEDGER_NOT_COVERED'
  | 'ERR_LEDGER_MESSAGE_INVALID'
  | 'ERR_LEDGER_MESSAGE_TOO_LARGE'
  | 'ERR_LEDGER_BUNDLE_INVALID'
  | 'ERR_LEDGER_DB_UNREADABLE'
  | 'ERR_LEDGER_NOTE_INVALID'
  | 'ERR_LEDGER_PROOF_INVALID'
  | 'ERR_LEDGER_RECOVERING';

/** Base class for every error of the ledger part; `code` is stable and documented. */
export class LedgerError extends Error {
  readonly code: LedgerErrorCode;

  constructor(code: LedgerErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = this.constructor.name;
  }
}
