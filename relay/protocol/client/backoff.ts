/** First reconnect delay ceiling. */
export const DEFAULT_BACKOFF_BASE_MS = 250;
/** Largest reconnect delay. */
export const DEFAULT_BACKOFF_MAX_MS = 30_000;

/** Reconnect backoff settings. */
export interface BackoffOptions {
  baseMs: number;
  maxMs: number;
}

/** Delay before reconnect attempt `attempt` (0-based): exponential ceiling with full jitter. */
export function backoffDelay(attempt: number, options: BackoffOptions, random: () => number = Math.random): number {
  const ceiling = Math.min(options.maxMs, options.baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}
