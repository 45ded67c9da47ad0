import { finished, type Readable } from 'node:stream';
import { CryptoError, type EnvelopeContext } from './errors.ts';

const EMPTY = Buffer.alloc(0);

/** Bytes {@link chunksOf} holds before it pauses its source. */
const CHUNK_QUEUE_BYTES = 1024 * 1024;

/**
 * A Readable's chunks as they were pushed. A Readable's own async iterator
 * reads in paused mode, where each `read()` concatenates everything buffered
 * into a new Buffer: a copy of the whole payload, in large short-lived
 * allocations, that a multi-gigabyte envelope pays for in GC.
 */
export async function* chunksOf(source: Readable): AsyncGenerator<Buffer> {
  const queue: Buffer[] = [];
  let queued = 0;
  let done = false;
  let failure: Error | undefined;
  let wake: (() => void) | undefined;
  const notify = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const onData = (chunk: Buffer): void => {
    queue.push(chunk);
    queued += chunk.length;
    if (queued >= CHUNK_QUEUE_BYTES) source.pause();
    notify();
  };
  const stop = finished(source, (err) => {
    if (err) failure = err;
    else done = true;
    notify();
  });
  source.on('data', onData);
  try {
    for (;;) {
      const chunk = queue.shift();
      if (chunk) {
        queued -= chunk.length;
        if (queued < CHUNK_QUEUE_BYTES && source.isPaused() && !done) source.resume();
        yield chunk;
        continue;
      }
      if (failure) throw failure;
      if (done) return;
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
  } finally {
    source.off('data', onData);
    stop();
    if (!done) source.destroy();
  }
}

/**
 * Reads exact byte counts from an async iterable of byte chunks, copying only
 * when a read spans two source chunks. Running out of bytes is
 * ERR_ENVELOPE_TRUNCATED; a failing source is too (with the cause).
 */
export class ByteReader {
  private buf: Buffer = EMPTY;
  private off = 0;
  private ended = false;
  /** Context put on errors; set by the opener as it learns it. */
  context: EnvelopeContext = {};
  /** Set by the opener once the envelope's last part (the trailer and its signature) is read. */
  whole = false;

  constructor(private readonly it: AsyncIterator<Uint8Array>) {}

  private async fill(what: string): Promise<boolean> {
    while (this.off >= this.buf.length) {
      if (this.ended) return false;
      let r: IteratorResult<Uint8Array>;
      try {
        r = await this.it.next();
      } catch (err) {
        throw new CryptoError('ERR_ENVELOPE_TRUNCATED', `the envelope stream failed while reading the ${what}`, { cause: err, context: this.context });
      }
      if (r.done) {
        this.ended = true;
        return false;
      }
      const v = r.value;
      this.buf = Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
      this.off = 0;
    }
    return true;
  }

  private truncated(what: string): CryptoError {
    return new CryptoError('ERR_ENVELOPE_TRUNCATED', `the envelope ends inside the ${what}`, { context: this.context });
  }

  /** Exactly `n` bytes (a view when possible). */
  async read(n: number, what: string): Promise<Buffer> {
    if (!(await this.fill(what))) throw this.truncated(what);
    if (this.buf.length - this.off >= n) {
      const out = this.buf.subarray(this.off, this.off + n);
      this.off += n;
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let got = 0;
    while (got < n) {
      if (!(await this.fill(what))) throw this.truncated(what);
      const take = Math.min(n - got, this.buf.length - this.off);
      this.buf.copy(out, got, this.off, this.off + take);
      this.off += take;
      got += take;
    }
    return out;
  }

  /** Yields views totalling exactly `n` bytes, without copying. */
  async *pieces(n: number, what: string): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      if (!(await this.fill(what))) throw this.truncated(what);
      const take = Math.min(left, this.buf.length - this.off);
      const piece = this.buf.subarray(this.off, this.off + take);
      this.off += take;
      left -= take;
      yield piece;
    }
  }

  /** True when the source has no more bytes. */
  async atEnd(): Promise<boolean> {
    return !(await this.fill('end'));
  }

  /**
   * Waits for the source to end with no further byte: true when it did. A
   * byte (or a failing source) means false; the caller then stops it.
   */
  async endsCleanly(): Promise<boolean> {
    try {
      return await this.atEnd();
    } catch {
      return false;
    }
  }

  /** Stops the source (destroys a Readable) after a failure. */
  async release(): Promise<void> {
    try {
      await this.it.return?.();
    } catch {
      // The source's own error was already reported.
    }
  }
}
