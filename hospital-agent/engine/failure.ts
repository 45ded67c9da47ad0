/**
 * Failure classification: which errors end an exchange (a
 * {@link NotRetryableError}, with the ledger's enumerated reason) and which
 * send it back to the queue with backoff.
 */
import { RelayError, TransferAbortedError } from '../../relay/protocol/index.ts';
import { CryptoError } from '../crypto/index.ts';
import { MemberRefusedError } from '../federation/membership.ts';
import { PeerKeyUnavailableError, RecipientRevokedError } from './peers.ts';

/** Ledger failure reasons (enumerated, no free text). */
export type FailureReason =
  'timeout' | 'rejected' | 'undeliverable' | 'integrity' | 'consent' | 'cancelled' | 'expired' | 'too-large' | 'unknown-recipient' | 'internal';

/**
 * The failed-receipt code of a recipient whose disk is full: it refused this
 * attempt, not the exchange, so the sender tries again later (an older
 * recipient never sends it).
 */
export const RECIPIENT_STORAGE_FULL = 'ERR_RECIPIENT_STORAGE_FULL';

/** Failed-receipt codes that mean "try again later" rather than "refused". */
const RETRYABLE_REFUSALS: ReadonlySet<string> = new Set([RECIPIENT_STORAGE_FULL]);

/** A recipient refused one attempt for a reason of its own that passes (e.g. its disk is full): retried with backoff. */
export class RecipientUnavailableError extends Error {
  constructor(readonly code: string) {
    super(`the recipient cannot take the exchange now (${code}); it will be retried`);
    this.name = this.constructor.name;
  }
}

/** True when a failed receipt with `code` refused only this attempt (the exchange is retried). */
export function refusesAttemptOnly(code: string): boolean {
  return RETRYABLE_REFUSALS.has(code);
}

/** What a failed receipt's code means for its exchange: a retry, or the final refusal. */
export function refusal(code: string, message: string): Error {
  return refusesAttemptOnly(code) ? new RecipientUnavailableError(code) : new NotRetryableError('integrity', code, message);
}

/** An exchange that will not be retried: it fails with this reason and code. */
export class NotRetryableError extends Error {
  constructor(
    readonly reason: FailureReason,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = this.constructor.name;
  }
}

/**
 * A consent that refuses the resend of an exchange released (and logged,
 * `exchange.sent`) before: the recipient may hold it already, so the engine
 * asks it for its receipt before failing the exchange (see `confirm.ts`).
 */
export class RevokedAfterReleaseError extends NotRetryableError {
  constructor(code: string, message: string) {
    super('consent', code, message);
  }
}

/** What `err` means for its exchange: a final failure, or undefined to retry. */
export function classify(err: Error): NotRetryableError | undefined {
  if (err instanceof NotRetryableError) return err;
  if (err instanceof RecipientUnavailableError) return undefined;
  if (err instanceof PeerKeyUnavailableError) return undefined;
  // A member revoked in the directory is gone for good; a suspended one (or one not listed yet) may come back: retried.
  if (err instanceof MemberRefusedError) return err.refusal === 'revoked' ? new NotRetryableError('unknown-recipient', err.code, err.message) : undefined;
  if (err instanceof RecipientRevokedError) return new NotRetryableError('unknown-recipient', 'ERR_UNKNOWN_RECIPIENT', err.message);
  if (err instanceof TransferAbortedError) {
    if (err.reason === 'rejected' || err.reason === 'protocol-error') return new NotRetryableError('rejected', 'ERR_EXCHANGE_REJECTED', err.message);
    return undefined;
  }
  if (err instanceof RelayError) return undefined;
  // The sealer refused this exchange's own envelope (it would be refused again).
  if (err instanceof CryptoError && err.code.startsWith('ERR_ENVELOPE')) return new NotRetryableError('internal', err.code, err.message);
  if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new NotRetryableError('internal', 'ERR_OUTBOX_MISSING', 'the stored body is missing');
  return undefined;
}
