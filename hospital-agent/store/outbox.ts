import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Transform, type TransformCallback, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AgentError } from '../errors.ts';
import { fsyncPath, safeId } from './inbox.ts';

/** Size and digest of a body written to the outbox. */
export interface StoredBody {
  bytes: number;
  sha256: string;
  /** The body itself, when it is small (up to {@link SMALL_BODY_BYTES}). */
  content?: Buffer;
}

/**
 * Bytes the upload may run ahead of the disk: with Node's 16 KiB default every
 * request chunk waited for its own write; 1 MiB lets writes batch (writev, 16
 * request chunks at a time) while the request keeps streaming. More is worse:
 * at 4 MiB (twice over, the meter's and the file's buffers) most chunks lived
 * through two scavenges, and the old-space garbage they left cost a full
 * mark-compact per ~64 MiB uploaded (docs/performance.md, "The large
 * exchange: where each agent's CPU goes"). At 256 KiB the writes cost more
 * than the GC saved.
 */
const WRITE_BUFFER_BYTES = 1024 * 1024;

/** Bodies up to this size are also kept in memory while their exchange is unfinished (FHIR validation and sending read no file). */
export const SMALL_BODY_BYTES = 256 * 1024;
/** At most this many bytes of small bodies are kept in memory; beyond it they are read from disk. */
const SMALL_BODY_CACHE_BYTES = 64 * 1024 * 1024;

/** How long an upload waits for a live send that takes no bytes before it drops it (the body is then sent from disk). */
export const DEFAULT_MIRROR_STALL_MS = 5_000;

/**
 * Counts, limits and hashes the body on its way to disk, and copies it to an
 * optional mirror (a send that overlaps the upload). The mirror slows the
 * upload down to its own pace, but it never fails it: once the mirror breaks
 * or closes, the body simply goes on to disk alone.
 */
class Meter extends Transform {
  bytes = 0;
  private readonly hash = createHash('sha256');

  /** The body's chunks while it is no larger than `keepBytes` (undefined once it grew past). */
  private kept: Buffer[] | undefined = [];

  constructor(
    private readonly maxBytes: number,
    private mirror: Writable | undefined,
    private readonly mirrorStallMs: number,
    private readonly keepBytes: number,
  ) {
    super({ highWaterMark: WRITE_BUFFER_BYTES });
  }

  /** The whole body, when it was small enough to keep. */
  content(): Buffer | undefined {
    return this.kept ? Buffer.concat(this.kept) : undefined;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.maxBytes) {
      cb(new AgentError('ERR_PAYLOAD_TOO_LARGE', `body exceeds the limit of ${this.maxBytes} bytes`));
      return;
    }
    this.hash.update(chunk);
    if (this.kept) {
      if (this.bytes <= this.keepBytes) this.kept.push(chunk);
      else this.kept = undefined;
    }
    const m = this.mirror;
    if (!m || m.destroyed || m.writableEnded) {
      this.mirror = undefined;
      cb(null, chunk);
      return;
    }
    if (m.write(chunk)) {
      cb(null, chunk);
      return;
    }
    const go = (): void => {
      clearTimeout(stalled);
      m.off('drain', go);
      m.off('close', go);
      cb(null, chunk);
    };
    // A mirror that stops taking bytes (a recipient that hangs) must not hold the upload: drop it.
    const stalled = setTimeout(() => {
      this.mirror = undefined;
      m.destroy(
        Object.assign(new Error(`the live send took no bytes for ${this.mirrorStallMs} ms; the body will be sent once stored`), {
          code: 'ERR_LIVE_SEND_STALLED',
        }),
      );
    }, this.mirrorStallMs);
    m.on('drain', go);
    m.on('close', go);
  }

  digest(): string {
    return this.hash.digest('hex');
  }
}

/**
 * Bodies of outgoing exchanges, kept on disk until the exchange is final:
 * `<id>.part` while the request streams in, renamed to `<id>.body` after
 * fsync, so an accepted exchange never refers to a partial body.
 */
export class Outbox {
  /** Small bodies of unfinished exchanges, so sending them reads no file (the file stays the durable copy). */
  private readonly cache = new Map<string, Buffer>();
  private cachedBytes = 0;

  constructor(readonly dir: string) {}

  /** Creates the directory (0700) and deletes partial uploads and bodies no record refers to. */
  async recover(knownIds: ReadonlySet<string>): Promise<number> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    let removed = 0;
    for (const name of await readdir(this.dir)) {
      const id = name.replace(/\.(part|body)$/, '');
      if (name.endsWith('.part') || !knownIds.has(id)) {
        await rm(join(this.dir, name), { force: true });
        removed += 1;
      }
    }
    return removed;
  }

  private path(id: string, ext: 'part' | 'body'): string {
    return join(this.dir, `${safeId(id)}.${ext}`);
  }

  /**
   * Streams `body` to disk, hashing it once; refuses more than `maxBytes`.
   * Every byte is also written to `mirror` (never ended here) while it accepts them;
   * a mirror that takes nothing for `mirrorStallMs` is destroyed and the upload goes on without it.
   * A small body is also kept in memory (returned as `content`, and read from memory until removed).
   */
  async write(id: string, body: Readable, maxBytes: number, mirror?: Writable, options: { mirrorStallMs?: number } = {}): Promise<StoredBody> {
    const part = this.path(id, 'part');
    const meter = new Meter(maxBytes, mirror, options.mirrorStallMs ?? DEFAULT_MIRROR_STALL_MS, SMALL_BODY_BYTES);
    // `flush`: fsync before the stream closes its file, so the file is opened once.
    const file = createWriteStream(part, { flags: 'wx', mode: 0o600, highWaterMark: WRITE_BUFFER_BYTES, flush: true });
    try {
      await pipeline(body, meter, file);
      await rename(part, this.path(id, 'body'));
      // The rename itself must reach the disk before the exchange is acknowledged.
      await fsyncPath(this.dir);
    } catch (err) {
      // A body refused before the file was even open: the open completes after the refusal and creates the file,
      // so it is removed only once the stream has closed it.
      if (!file.closed) await once(file, 'close').catch(() => undefined);
      await rm(part, { force: true });
      throw err;
    }
    const content = meter.content();
    if (content && this.cachedBytes + content.length <= SMALL_BODY_CACHE_BYTES) {
      this.cache.set(id, content);
      this.cachedBytes += content.length;
    }
    return { bytes: meter.bytes, sha256: meter.digest(), ...(content ? { content } : {}) };
  }

  /** A stream of a stored body (from memory while a small one is cached). */
  read(id: string): Readable {
    const cached = this.cache.get(id);
    return cached ? Readable.from([cached], { objectMode: false }) : createReadStream(this.path(id, 'body'));
  }

  /** A stored body of `bytes` bytes, read whole into memory (a FHIR Bundle to validate; never a large one). */
  async readAll(id: string, bytes: number): Promise<Buffer> {
    const cached = this.cache.get(id);
    if (cached) return cached;
    const fh = await open(this.path(id, 'body'), 'r');
    try {
      const buf = Buffer.alloc(bytes);
      await fh.read(buf, 0, bytes, 0);
      return buf;
    } finally {
      await fh.close();
    }
  }

  /** Deletes a stored body (once the exchange is final). */
  async remove(id: string): Promise<void> {
    const cached = this.cache.get(id);
    if (cached) {
      this.cache.delete(id);
      this.cachedBytes -= cached.length;
    }
    try {
      await unlink(this.path(id, 'body'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
}
