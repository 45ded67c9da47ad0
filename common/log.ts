import { pino, type Logger, type LoggerOptions } from 'pino';

/** Log lines are gathered up to this many bytes before a write. */
export const LOG_BUFFER_BYTES = 4096;
/** ... and written at least this often (ms), so a quiet process's last lines are not held back. */
export const LOG_FLUSH_MS = 250;
/** Lines waiting for a stalled reader of stdout beyond this many bytes are dropped, not held in memory. */
export const LOG_MAX_BUFFERED_BYTES = 16 * 1024 * 1024;
/** How often (ms) at most stderr is told that lines were dropped. */
const DROP_NOTICE_MS = 60_000;

/** Where {@link createLogger} writes. */
export interface LogDestination {
  /** File descriptor (default 1, stdout). */
  fd?: number;
  /** Bytes held for a stalled reader before lines are dropped (default {@link LOG_MAX_BUFFERED_BYTES}). */
  maxBufferedBytes?: number;
}

/**
 * A pino logger writing JSON lines to stdout through pino's asynchronous
 * destination: lines are gathered and written together (at
 * {@link LOG_BUFFER_BYTES}, or every {@link LOG_FLUSH_MS} ms), so a busy relay
 * or agent logging at `info` does not block on one write() per line (on a
 * shared virtual machine that write costs as much as the work it logs). Pino
 * flushes what is buffered when the process exits; only a kill -9 or a power
 * loss can cost the last {@link LOG_FLUSH_MS} ms of lines. If nothing reads
 * stdout, lines beyond `maxBufferedBytes` are dropped and stderr says so
 * (at most once a minute), so a stalled log collector cannot grow memory.
 * Each line's `time` is ISO 8601 in UTC (`2025-03-01T12:00:00.000Z`), as a
 * hospital's log tools read it, not pino's epoch milliseconds.
 */
export function createLogger(options: LoggerOptions, where: LogDestination = {}): Logger {
  const destination = pino.destination({
    dest: where.fd ?? 1,
    sync: false,
    minLength: LOG_BUFFER_BYTES,
    periodicFlush: LOG_FLUSH_MS,
    maxLength: where.maxBufferedBytes ?? LOG_MAX_BUFFERED_BYTES,
  });
  let dropped = 0;
  let told = 0;
  destination.on('drop', () => {
    dropped += 1;
    const now = Date.now();
    if (now - told < DROP_NOTICE_MS) return;
    told = now;
    process.stderr.write(`log lines dropped (${dropped} so far): stdout is not being read fast enough\n`);
  });
  return pino({ timestamp: pino.stdTimeFunctions.isoTime, ...options }, destination);
}
