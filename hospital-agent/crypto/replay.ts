import { open as openFile, readFile, rename, type FileHandle } from 'node:fs/promises';
import { writevAll } from '../../common/write-all.ts';
import { CryptoError } from './errors.ts';

/** How long an opener remembers an exchange id, and how old an envelope it accepts (7 days). */
export const DEFAULT_REPLAY_WINDOW_MS = 7 * 86_400_000;
/** How far in the future an envelope's creation time may be (clock skew), 5 minutes. */
export const DEFAULT_MAX_CLOCK_SKEW_MS = 5 * 60_000;

/**
 * Seen exchange ids with an expiry. The agent backs it with durable storage;
 * `add` must be an atomic check-and-set.
 */
export interface ReplayStore {
  /** True when `key` was added and has not expired at `now`. */
  has(key: string, now: Date): Promise<boolean>;
  /** Records `key` until `expiresAt`; false (and no change) when it is already present and unexpired. */
  add(key: string, expiresAt: Date, now: Date): Promise<boolean>;
  /** Forgets expired keys; returns how many. */
  prune(now: Date): Promise<number>;
  /**
   * Forgets one key, for an envelope that was opened but never delivered
   * (the agent stopped between the two), so its resend can be opened.
   */
  forget(key: string): Promise<void>;
}

/** The replay key of an envelope: sender and exchange id (exchange ids are unique per sender). */
export function replayKey(from: string, exchangeId: string): string {
  return `${from}/${exchangeId}`;
}

/** A replay store in memory (tests, short-lived tools). */
export class MemoryReplayStore implements ReplayStore {
  protected readonly seen = new Map<string, number>();

  async has(key: string, now: Date): Promise<boolean> {
    return this.holds(key, now);
  }

  // Check and set with no await between them: two concurrent opens of one envelope must not both pass.
  async add(key: string, expiresAt: Date, now: Date): Promise<boolean> {
    if (this.holds(key, now)) return false;
    this.seen.set(key, expiresAt.getTime());
    return true;
  }

  async forget(key: string): Promise<void> {
    this.seen.delete(key);
  }

  private holds(key: string, now: Date): boolean {
    const exp = this.seen.get(key);
    return exp !== undefined && exp > now.getTime();
  }

  async prune(now: Date): Promise<number> {
    let n = 0;
    for (const [k, exp] of this.seen) {
      if (exp <= now.getTime()) {
        this.seen.delete(k);
        n += 1;
      }
    }
    return n;
  }

  /** Number of remembered keys (expired ones included until pruned). */
  get size(): number {
    return this.seen.size;
  }
}

/**
 * A replay store persisted as an append-only file of JSON lines (`{k, e}`
 * remembered until e, `{k, d: 1}` forgotten), fsynced per change, so a
 * restarted agent still refuses replays. `prune` rewrites the file
 * atomically. Use one instance per file.
 */
export class FileReplayStore extends MemoryReplayStore {
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly path: string,
    private fh: FileHandle,
    /** Bytes of whole lines in the file: a failed append is cut back to this, so no torn line is ever followed by another. */
    private fileBytes: number,
  ) {
    super();
  }

  /**
   * Appends one line, all of it (a full disk may take part of a write), and
   * syncs it; if any of that fails, the file is cut back to its last whole
   * line, so the store stays readable when the disk has room again.
   */
  private async appendLine(line: string): Promise<void> {
    const bytes = Buffer.from(line);
    try {
      await writevAll(this.fh, [bytes]);
      await this.fh.datasync();
    } catch (err) {
      await this.fh.truncate(this.fileBytes).catch(() => undefined);
      throw err;
    }
    this.fileBytes += bytes.length;
  }

  /** Opens (or creates, mode 0600) the store file and loads it. A torn last line from a crash is ignored. */
  static async open(path: string): Promise<FileReplayStore> {
    let text = '';
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new CryptoError('ERR_REPLAY_STORE', `cannot read replay store ${path}`, { cause: err });
    }
    const lines = text.split('\n');
    const seen = new Map<string, number>();
    lines.forEach((line, i) => {
      if (line === '') return;
      try {
        const { k, e, d } = JSON.parse(line) as { k: unknown; e: unknown; d?: unknown };
        if (typeof k !== 'string' || (d === undefined && typeof e !== 'number') || (d !== undefined && d !== 1)) throw new Error('bad entry');
        // `d`: forgotten (see forget); otherwise remembered until `e`.
        if (d === 1) seen.delete(k);
        else seen.set(k, Math.max(e as number, seen.get(k) ?? 0));
      } catch (err) {
        // A torn last line is an add that never completed (the caller saw it fail).
        if (i === lines.length - 1) return;
        throw new CryptoError('ERR_REPLAY_STORE', `replay store ${path} is corrupt at line ${i + 1}`, { cause: err });
      }
    });
    const fh = await openFile(path, 'a', 0o600);
    // A torn last line is cut off (it was an add that never completed), so the next line starts clean.
    const whole = text.endsWith('\n') || text === '' ? text : text.slice(0, text.lastIndexOf('\n') + 1);
    const size = Buffer.byteLength(whole);
    if (size !== Buffer.byteLength(text)) await fh.truncate(size);
    const store = new FileReplayStore(path, fh, size);
    for (const [k, e] of seen) store.seen.set(k, e);
    return store;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  override add(key: string, expiresAt: Date, now: Date): Promise<boolean> {
    return this.serial(async () => {
      if (!(await super.add(key, expiresAt, now))) return false;
      try {
        await this.appendLine(`${JSON.stringify({ k: key, e: expiresAt.getTime() })}\n`);
      } catch (err) {
        this.seen.delete(key);
        throw new CryptoError('ERR_REPLAY_STORE', `cannot write replay store ${this.path}`, { cause: err });
      }
      return true;
    });
  }

  override forget(key: string): Promise<void> {
    return this.serial(async () => {
      if (!this.seen.has(key)) return;
      try {
        await this.appendLine(`${JSON.stringify({ k: key, d: 1 })}\n`);
      } catch (err) {
        throw new CryptoError('ERR_REPLAY_STORE', `cannot write replay store ${this.path}`, { cause: err });
      }
      this.seen.delete(key);
    });
  }

  override prune(now: Date): Promise<number> {
    return this.serial(async () => {
      const n = await super.prune(now);
      const tmp = `${this.path}.tmp`;
      const text = [...this.seen].map(([k, e]) => `${JSON.stringify({ k, e })}\n`).join('');
      const out = await openFile(tmp, 'w', 0o600);
      try {
        await out.writeFile(text);
        await out.sync();
      } finally {
        await out.close();
      }
      await rename(tmp, this.path);
      await this.fh.close();
      this.fh = await openFile(this.path, 'a', 0o600);
      this.fileBytes = Buffer.byteLength(text);
      return n;
    });
  }

  /** Closes the file. */
  close(): Promise<void> {
    return this.serial(() => this.fh.close());
  }
}
