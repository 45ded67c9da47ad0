/**
 * The exchange engine's options: what it is given (ports and settings), the
 * defaults of every setting as named constants, and {@link resolveEngineOptions},
 * which applies them once so the engine's parts read resolved values.
 */
import type { Writable } from 'node:stream';
import type { Ledger } from '../../ledger/index.ts';
import type { VerifiedUsage } from '../../relay/protocol/index.ts';
import type { SenderKeys } from '../crypto/index.ts';
import type { ConsentService } from '../services/consents.ts';
import type { ExchangeStore } from '../store/exchanges.ts';
import type { Outbox } from '../store/outbox.ts';
import type { PeerDirectory } from './peers.ts';
import type { WireMessage } from './wire.ts';

/** How long a sender waits for the recipient's receipt after the last byte. */
export const DEFAULT_RECEIPT_TIMEOUT_MS = 60_000;
/** While waiting for a receipt, ask the recipient for it again this often (a receipt sent while the relay was down is lost). */
export const DEFAULT_RECEIPT_POLL_MS = 5_000;
/** After a send that broke, how long a receipt (the recipient had the exchange already) is still waited for. */
export const DEFAULT_BROKEN_SEND_RECEIPT_MS = 2_000;
/** How long an exchange keeps being retried (recipient offline, relay down) before it fails as expired. */
export const DEFAULT_MAX_EXCHANGE_AGE_MS = 24 * 3600_000;
/** Retry backoff: first delay ceiling and cap. */
export const DEFAULT_RETRY_BASE_MS = 500;
/** Longest wait between two attempts. */
export const DEFAULT_RETRY_MAX_MS = 60_000;
/** Most small exchanges to one recipient sealed into one batch envelope (`limits.maxBatchExchanges`). */
export const DEFAULT_MAX_BATCH = 32;
/** Most body bytes one batch envelope carries. */
export const DEFAULT_MAX_BATCH_BYTES = 1024 * 1024;
/**
 * Batch envelopes in flight to one recipient at most. While they travel,
 * new exchanges for that recipient wait and go together in the next batch:
 * under load batches grow to what arrives in a round trip (fewer envelopes,
 * signatures and transfers per exchange); a lone exchange still goes at once.
 */
export const DEFAULT_BATCHES_PER_RECIPIENT = 1;

/** What the engine needs from the relay connection. */
export interface RelayPort {
  openTransfer(to: string, options: { meta?: Uint8Array }): Writable & { usage: Promise<VerifiedUsage> };
  /** Whether the relay connection is up (a live send starts only then). */
  readonly connected: boolean;
}

/** Minimal logger (pino-compatible). */
export interface EngineLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** Options of the exchange engine; settings left out take the defaults above. */
export interface EngineOptions {
  self: string;
  store: ExchangeStore;
  outbox: Outbox;
  consents: ConsentService;
  peers: PeerDirectory;
  ledger: Ledger;
  relay: RelayPort;
  /** Sends a small agent message (to ask for a receipt again after a reconnect). */
  send?: (to: string, message: WireMessage) => void;
  sender: () => SenderKeys;
  logger: EngineLogger;
  /** Sends (single envelopes or batches) in flight at once. */
  maxConcurrent: number;
  /** Most inline exchanges per batch envelope (default {@link DEFAULT_MAX_BATCH}; 1 sends each in its own). */
  maxBatch?: number;
  /** Most body bytes per batch envelope (default {@link DEFAULT_MAX_BATCH_BYTES}). */
  maxBatchBytes?: number;
  /** Batch envelopes in flight to one recipient at most (default {@link DEFAULT_BATCHES_PER_RECIPIENT}). */
  batchesPerRecipient?: number;
  receiptTimeoutMs?: number;
  maxAgeMs?: number;
  retry?: { baseMs: number; maxMs: number };
  now?: () => Date;
}

/** Every setting of the engine, resolved. */
export interface EngineSettings {
  maxConcurrent: number;
  maxBatch: number;
  maxBatchBytes: number;
  batchesPerRecipient: number;
  receiptTimeoutMs: number;
  receiptPollMs: number;
  brokenSendReceiptMs: number;
  maxAgeMs: number;
  retry: { baseMs: number; maxMs: number };
}

/** The engine's settings with every default applied (done once, when the engine is built). */
export function resolveEngineOptions(o: EngineOptions): EngineSettings {
  return {
    maxConcurrent: o.maxConcurrent,
    maxBatch: o.maxBatch ?? DEFAULT_MAX_BATCH,
    maxBatchBytes: o.maxBatchBytes ?? DEFAULT_MAX_BATCH_BYTES,
    batchesPerRecipient: o.batchesPerRecipient ?? DEFAULT_BATCHES_PER_RECIPIENT,
    receiptTimeoutMs: o.receiptTimeoutMs ?? DEFAULT_RECEIPT_TIMEOUT_MS,
    receiptPollMs: DEFAULT_RECEIPT_POLL_MS,
    brokenSendReceiptMs: DEFAULT_BROKEN_SEND_RECEIPT_MS,
    maxAgeMs: o.maxAgeMs ?? DEFAULT_MAX_EXCHANGE_AGE_MS,
    retry: o.retry ?? { baseMs: DEFAULT_RETRY_BASE_MS, maxMs: DEFAULT_RETRY_MAX_MS },
  };
}
