/** The agent's exchange engine: what the rest of the agent uses of it. */
export { ExchangeEngine, type EngineEvents, type LiveSend } from './engine.ts';
export {
  DEFAULT_BATCHES_PER_RECIPIENT,
  DEFAULT_MAX_BATCH,
  DEFAULT_MAX_BATCH_BYTES,
  DEFAULT_MAX_EXCHANGE_AGE_MS,
  DEFAULT_RECEIPT_POLL_MS,
  DEFAULT_RECEIPT_TIMEOUT_MS,
  DEFAULT_RETRY_BASE_MS,
  DEFAULT_RETRY_MAX_MS,
  type EngineLogger,
  type EngineOptions,
  type RelayPort,
} from './options.ts';
export { NotRetryableError, classify, type FailureReason } from './failure.ts';
export { CANCELLED_CODE } from './cancel.ts';
export type { Admission, ReleaseGate } from './release.ts';
