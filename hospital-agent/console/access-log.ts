// One job: the console's append-only access log (who looked at what, when; patients only as keyed hashes), hash-chained line to line.
import { createHash } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readSync, fstatSync, appendFileSync, existsSync } from 'node:fs';
import { dirname } from 'node:path';

/** Lines the console shows at most (the newest). */
export const ACCESS_LOG_VIEW_LINES = 500;
/** Bytes read from the end of the log to show its newest lines. */
const TAIL_BYTES = 512 * 1024;

/** One console query as the access log records it. */
export interface AccessRecord {
  ts: string;
  /** The token name that signed in. */
  who: string;
  /** The view or action (`exchanges`, `exchange`, `proof`, `report`, `sign-in`, ...). */
  view: string;
  /** The keyed patient hash the query named, if any (never the clear id). */
  patient?: string | undefined;
  /** The query's other parameters (exchange id, filters); the console never puts a clear patient id in them. */
  query?: Record<string, string> | undefined;
  /** SHA-256 of the previous line (64 zeros for the first): a removed or edited line breaks the chain. */
  prev: string;
}

const ZERO = '0'.repeat(64);
const sha256 = (s: string): string => createHash('sha256').update(s, 'utf8').digest('hex');

/** The last complete line of a file (read from its end), or undefined. */
function readTail(path: string, bytes: number): string {
  if (!existsSync(path)) return '';
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const n = Math.min(size, bytes);
    const buf = Buffer.alloc(n);
    readSync(fd, buf, 0, n, size - n);
    const text = buf.toString('utf8');
    // A tail that starts mid-line drops its first, partial line.
    return n < size ? text.slice(text.indexOf('\n') + 1) : text;
  } finally {
    closeSync(fd);
  }
}

/**
 * An append-only NDJSON file (HIPAA 164.312(b) audit controls for the
 * console itself): one line per console query, written before the answer is
 * sent, each carrying the SHA-256 of the line before it. The agent only ever
 * appends (O_APPEND); the console shows the newest lines.
 */
export class AccessLog {
  private prev: string;

  constructor(readonly path: string) {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    const last =
      readTail(path, 64 * 1024)
        .trimEnd()
        .split('\n')
        .at(-1) ?? '';
    this.prev = last ? sha256(last) : ZERO;
  }

  /** Appends one record (synchronously, so the line is written before the page that it records is answered). */
  record(r: Omit<AccessRecord, 'prev' | 'ts'> & { ts?: string }): AccessRecord {
    const full: AccessRecord = { ts: r.ts ?? new Date().toISOString(), who: r.who, view: r.view, prev: this.prev };
    if (r.patient !== undefined) full.patient = r.patient;
    if (r.query !== undefined && Object.keys(r.query).length > 0) full.query = r.query;
    const line = JSON.stringify(full);
    appendFileSync(this.path, `${line}\n`, { mode: 0o600, flag: 'a' });
    this.prev = sha256(line);
    return full;
  }

  /** The newest records, newest first (at most `limit`). */
  recent(limit = ACCESS_LOG_VIEW_LINES): AccessRecord[] {
    const lines = readTail(this.path, TAIL_BYTES).split('\n').filter(Boolean);
    const out: AccessRecord[] = [];
    for (let i = lines.length - 1; i >= 0 && out.length < limit; i--) {
      try {
        out.push(JSON.parse(lines[i] as string) as AccessRecord);
      } catch {
        // A torn last line (a crash mid-append) is skipped, not fatal.
      }
    }
    return out;
  }

  /** Checks the whole chain: the number of the first line whose `prev` does not match, or undefined when intact. */
  static verify(text: string): number | undefined {
    let prev = ZERO;
    const lines = text.split('\n').filter(Boolean);
    for (const [i, line] of lines.entries()) {
      let r: AccessRecord;
      try {
        r = JSON.parse(line) as AccessRecord;
      } catch {
        return i + 1;
      }
      if (r.prev !== prev) return i + 1;
      prev = sha256(line);
    }
    return undefined;
  }
}
