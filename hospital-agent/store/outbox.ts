import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, type ReadStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Transform, type TransformCallback } from 'node:stream';
import { AgentError } from '../errors.ts';
import { safeId } from './inbox.ts';

/** Size and digest of a body written to the outbox. */
export interface StoredBody {
  bytes: number;
  sha256: string;
}

/**
 * Bytes the upload may run ahead of the disk: with Node's 16 KiB default every
 * request chunk waited for its own write; a few MiB lets writes batch (writev)
 * while the request keeps streaming.
 */
const WRITE_BUFFER_BYTES = 4 * 1024 * 1024;

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

  constructor(
    private readonly maxBytes: number,
    private mirror: Writable | undefined,
    private readonly mirrorStallMs: number,
  ) {
    super({ highWaterMark: WRITE_BUFFER_BYTES });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.maxBytes) {
      cb(new AgentError('ERR_PAYLOAD_TOO_LARGE', `body exceeds the limit of ${this.maxBytes} bytes`));
      return;
    }
    this.hash.update(chunk);
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
      m.destroy(Object.assign(new Error(`the live send took no bytes for ${this.mirrorStallMs} ms; the body will be sent once stored`), { code: 'ERR_LIVE_SEND_STALLED' }));
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
   */
  async write(id: string, body: Readable, maxBytes: number, mirror?: Writable, options: { mirrorStallMs?: number } = {}): Promise<StoredBody> {
    const part = this.path(id, 'part');
    const meter = new Meter(maxBytes, mirror, options.mirrorStallMs ?? DEFAULT_MIRROR_STALL_MS);
    try {
      await pipeline(body, meter, createWriteStream(part, { flags: 'wx', mode: 0o600, highWaterMark: WRITE_BUFFER_BYTES }));
      const fh = await open(part, 'r');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(part, this.path(id, 'body'));
    } catch (err) {
      await rm(part, { force: true });
      throw err;
    }
    return { bytes: meter.bytes, sha256: meter.digest() };
  }

  /** A read stream of a stored body. */
  read(id: string): ReadStream {
    return createReadStream(this.path(id, 'body'));
  }

  /** Deletes a stored body (once the exchange is final). */
  async remove(id: string): Promise<void> {
    await rm(this.path(id, 'body'), { force: true });
  }
}
