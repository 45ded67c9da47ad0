import { pino, type Logger, type LoggerOptions } from 'pino';

/** Log lines are gathered up to this many bytes before a write. */
export const LOG_BUFFER_BYTES = 4096;
/** ... and written at least this often (ms), so a quiet process's last lines are not held back. */
export const LOG_FLUSH_MS = 250;
/** Lines waiting for a stalled reader of stdout beyond this many bytes are dropped, not held in memory. */
export const LOG_MAX_BUFFERED_BYTES = 16 * 1024 * 1024;

/**
 * A pino logger writing JSON lines to stdout (or `fd`) through pino's
 * asynchronous destination: lines are gathered and written together (at
 * {@link LOG_BUFFER_BYTES}, or every {@link LOG_FLUSH_MS} ms), so a busy relay
 * or agent logging at `info` does not block on one write() per line (on a
 * shared virtual machine that write costs as much as the work it logs). Pino
 * flushes what is buffered when the process exits; only a kill -9 or a power
 * loss can cost the last {@link LOG_FLUSH_MS} ms of lines.
 */
export function createLogger(options: LoggerOptions, fd = 1): Logger {
  const destination = pino.destination({ dest: fd, sync: false, minLength: LOG_BUFFER_BYTES, periodicFlush: LOG_FLUSH_MS, maxLength: LOG_MAX_BUFFERED_BYTES });
  return pino(options, destination);
}
