import { Writable } from 'node:stream';
import { encodeAbort, encodeEnd, encodeOpen } from '../codec.ts';
import { abortCodeFor, FRAME_PREFIX, FrameKind, PROTOCOL_VERSION, type AbortCode } from '../constants.ts';
import { RelayError, TransferAbortedError } from '../errors.ts';
import { deferred, destroyWith, type Link, type VerifiedUsage } from './link.ts';

/** Full-size DATA frame buffers kept for reuse per transfer. */
const FRAME_POOL_SIZE = 8;

/** Default bytes the Writable buffers before `write()` returns false. */
export const DEFAULT_OUTBOUND_HIGH_WATER_MARK = 1024 * 1024;

/**
 * A transfer this agent sends, as a Node Writable. Writes complete only as
 * the recipient grants credit, so `write()` backpressure follows the far end.
 * `usage` resolves with the relay's verified usage statement after `end()`.
 */
export class OutboundTransfer extends Writable {
  readonly id: number;
  readonly to: string;
  /** Resolves when the relay confirms completion with a signed usage statement. */
  readonly usage: Promise<VerifiedUsage>;
  /** Payload bytes sent so far. */
  bytesSent = 0;
  private credit = 0;
  private queue: Buffer[] = [];
  private queued = 0;
  private waiting: ((err?: Error | null) => void) | undefined;
  private state: 'open' | 'ended' | 'done' = 'open';
  private pumpScheduled = false;
  private readonly pool: Buffer[] = [];
  private readonly settle = deferred<VerifiedUsage>();

  /** @internal Use RelayClient.openTransfer. */
  constructor(
    private readonly link: Link,
    id: number,
    to: string,
    meta: Uint8Array,
  ) {
    super({ highWaterMark: DEFAULT_OUTBOUND_HIGH_WATER_MARK });
    this.id = id;
    this.to = to;
    this.usage = this.settle.promise;
    link.send(encodeOpen(id, to, meta, link.limits));
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this._writev([{ chunk }], cb);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, cb: (err?: Error | null) => void): void {
    for (const { chunk } of chunks) {
      if (chunk.length === 0) continue;
      this.queue.push(chunk);
      this.queued += chunk.length;
    }
    this.waiting = cb;
    this.pump();
  }

  private pump(): void {
    this.pumpScheduled = false;
    while (this.queued > 0 && this.credit > 0) {
      if (this.link.congested()) {
        // Credit allows more, but the socket is behind: wait for it rather than queue in memory.
        if (!this.pumpScheduled) {
          this.pumpScheduled = true;
          this.link.whenDrained(() => this.pump());
        }
        return;
      }
      const n = Math.min(this.credit, this.link.chunkSize, this.queued);
      const frame = this.frameBuffer(n);
      let at = FRAME_PREFIX;
      while (at < frame.length) {
        const h = this.queue[0] as Buffer;
        const take = Math.min(frame.length - at, h.length);
        h.copy(frame, at, 0, take);
        if (take === h.length) this.queue.shift();
        else this.queue[0] = h.subarray(take);
        at += take;
      }
      this.queued -= n;
      this.credit -= n;
      this.bytesSent += n;
      // Full-size frames go back to a small pool once written: megabyte garbage per chunk costs more in GC than the copy.
      this.link.send(frame, frame.length === this.link.chunkSize + FRAME_PREFIX ? () => this.recycle(frame) : undefined);
    }
    if (this.queued === 0 && this.waiting) {
      const cb = this.waiting;
      this.waiting = undefined;
      cb();
    }
  }

  private frameBuffer(n: number): Buffer {
    const full = n === this.link.chunkSize;
    const frame = (full ? this.pool.pop() : undefined) ?? Buffer.allocUnsafe(FRAME_PREFIX + n);
    frame[0] = PROTOCOL_VERSION;
    frame[1] = FrameKind.DATA;
    frame.writeUInt32BE(this.id, 2);
    return frame;
  }

  private recycle(frame: Buffer): void {
    if (this.pool.length < FRAME_POOL_SIZE && frame.length === this.link.chunkSize + FRAME_PREFIX) this.pool.push(frame);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.state = 'ended';
    this.link.send(encodeEnd(this.id));
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    // After END the relay owns completion (autoDestroy lands here too): wait for the usage statement.
    if (this.state === 'open') {
      // Destroyed by our side before the end: tell the relay, which tells the recipient.
      if (!(err instanceof TransferAbortedError) && !(err instanceof RelayError && err.code === 'ERR_RELAY_CONNECTION_LOST')) {
        this.link.send(encodeAbort(this.id, 'cancelled', err ? 'sender failed' : 'sender cancelled'));
      }
      this.finish(err ?? new TransferAbortedError('cancelled', 'destroyed by sender', true));
    }
    cb(err);
  }

  private finish(err?: Error, usage?: VerifiedUsage): void {
    if (this.state === 'done') return;
    this.state = 'done';
    this.link.release(this.id);
    if (usage) this.settle.resolve(usage);
    else this.settle.reject(err ?? new TransferAbortedError('internal', 'transfer ended without a usage statement'));
  }

  /** Aborts the transfer: the recipient sees `code` too. */
  abort(code: AbortCode = 'cancelled', reason = ''): void {
    if (this.state === 'done') return;
    this.link.send(encodeAbort(this.id, abortCodeFor(code, this.link.peerRevision), reason));
    const err = new TransferAbortedError(code, reason, true);
    this.finish(err);
    destroyWith(this, err);
  }

  /** @internal The recipient granted more credit. */
  onCredit(bytes: number): void {
    this.credit += bytes;
    if (!this.pumpScheduled) this.pump();
  }

  /** @internal The relay or the recipient aborted. */
  onAbort(err: Error): void {
    this.finish(err);
    destroyWith(this, err);
  }

  /** @internal The relay confirmed completion. */
  onUsage(usage: VerifiedUsage | Error): void {
    if (usage instanceof Error) this.finish(usage);
    else this.finish(undefined, usage);
  }
}
