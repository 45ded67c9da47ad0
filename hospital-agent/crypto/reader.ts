import { CryptoError, type EnvelopeContext } from './errors.ts';

const EMPTY = Buffer.alloc(0);

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

  /** Stops the source (destroys a Readable) after a failure. */
  async release(): Promise<void> {
    try {
      await this.it.return?.();
    } catch {
      // The source's own error was already reported.
    }
  }
}
