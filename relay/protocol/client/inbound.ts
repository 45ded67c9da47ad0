import { Readable } from 'node:stream';
import { encodeAbort, encodeCredit } from '../codec.ts';
import { abortCodeFor, type AbortCode } from '../constants.ts';
import { RelayError, TransferAbortedError } from '../errors.ts';
import { deferred, destroyWith, type Link, type VerifiedUsage } from './link.ts';

/** An inbound transfer on which no data arrives for this long, while credit is outstanding, is aborted (`idle-timeout`). */
export const DEFAULT_INBOUND_IDLE_MS = 60_000;

/**
 * A transfer delivered to this agent, as a Node Readable. Credit is granted
 * as the consumer reads, so at most `window` bytes are ever in flight or
 * buffered for it. Destroying it early aborts the transfer for the sender.
 * A sender that holds credit and sends nothing for `idleMs` has the transfer
 * aborted with `idle-timeout`, so the slot is freed even if the relay does not.
 */
export class InboundTransfer extends Readable {
  readonly id: number;
  readonly from: string;
  /** Opaque metadata the sender attached to the OPEN. */
  readonly meta: Buffer;
  bytesReceived = 0;
  private granted = 0;
  private state: 'open' | 'ended' | 'done' = 'open';
  private readonly settle = deferred<VerifiedUsage>();
  /** The relay's statement, verified only when someone asks for it (the sender pays; most recipients never look). */
  private unverified: (() => VerifiedUsage | Error) | undefined;
  private wanted = false;
  /** When data last arrived or credit was last granted: the sender has had reason to send since. */
  private lastProgress = Date.now();
  private idleTimer: NodeJS.Timeout | undefined;

  /** @internal Created by RelayClient when the relay delivers an OPEN. */
  constructor(
    private readonly link: Link,
    id: number,
    from: string,
    meta: Buffer,
    private readonly window: number,
    private readonly idleMs = DEFAULT_INBOUND_IDLE_MS,
  ) {
    super({ highWaterMark: window });
    this.id = id;
    this.from = from;
    this.meta = Buffer.from(meta);
    this.grant(window);
    this.armIdle(idleMs);
  }

  private armIdle(ms: number): void {
    if (this.idleMs <= 0) return;
    this.idleTimer = setTimeout(() => this.checkIdle(), ms);
    this.idleTimer.unref();
  }

  private checkIdle(): void {
    this.idleTimer = undefined;
    if (this.state !== 'open' || this.destroyed) return;
    const quiet = Date.now() - this.lastProgress;
    // With no credit outstanding the sender waits on our reader, not the other way round.
    if (quiet < this.idleMs || this.granted === this.bytesReceived) return this.armIdle(Math.max(10, this.idleMs - quiet));
    this.abort('idle-timeout', `no data for ${this.idleMs} ms`);
  }

  private stopIdle(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }

  /** Resolves with the relay's verified usage statement after the last byte. */
  get usage(): Promise<VerifiedUsage> {
    this.wanted = true;
    this.verifyUsage();
    return this.settle.promise;
  }

  private verifyUsage(): void {
    const verify = this.unverified;
    if (!verify) return;
    this.unverified = undefined;
    const usage = verify();
    if (usage instanceof Error) this.settle.reject(usage);
    else this.settle.resolve(usage);
  }

  private grant(bytes: number): void {
    this.granted += bytes;
    this.lastProgress = Date.now();
    this.link.send(encodeCredit(this.id, bytes));
  }

  override _read(): void {
    // Readable calls _read before it takes the consumed bytes off the buffer; decide once they are gone.
    queueMicrotask(() => this.maybeGrant());
  }

  private maybeGrant(): void {
    if (this.state !== 'open' || this.destroyed) return;
    const outstanding = this.granted - this.bytesReceived;
    const free = this.window - outstanding - this.readableLength;
    // Grant in large steps; but when nothing is outstanding no data will come to trigger the next _read, so grant now.
    if (free > 0 && (free >= this.window / 4 || outstanding === 0)) this.grant(free);
  }

  /** @internal One DATA payload. */
  onData(payload: Buffer): void {
    if (this.state !== 'open') return;
    this.lastProgress = Date.now();
    this.bytesReceived += payload.length;
    this.push(payload);
  }

  /** @internal END arrived. */
  onEnd(): void {
    if (this.state !== 'open') return;
    this.state = 'ended';
    this.stopIdle();
    this.push(null);
  }

  /** @internal The relay or the sender aborted. */
  onAbort(err: Error): void {
    this.finish(err);
    destroyWith(this, err);
  }

  /** @internal The relay's usage statement arrived; `verify` checks it (or says why it fails) when `usage` is read. */
  onUsage(verify: () => VerifiedUsage | Error): void {
    this.stopIdle();
    if (this.state === 'done') return;
    this.state = 'done';
    this.link.release(this.id);
    this.unverified = verify;
    if (this.wanted) this.verifyUsage();
  }

  /** Refuses or cancels the transfer; the sender sees `code`. */
  abort(code: AbortCode = 'rejected', reason = ''): void {
    if (this.state === 'done') return;
    this.link.send(encodeAbort(this.id, abortCodeFor(code, this.link.peerRevision), reason));
    const err = new TransferAbortedError(code, reason, true);
    this.finish(err);
    destroyWith(this, err);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.stopIdle();
    if (this.state === 'open' && !(err instanceof TransferAbortedError) && !(err instanceof RelayError && err.code === 'ERR_RELAY_CONNECTION_LOST')) {
      this.link.send(encodeAbort(this.id, 'rejected', 'recipient stopped reading'));
      this.finish(err ?? new TransferAbortedError('rejected', 'destroyed by recipient', true));
    }
    cb(err);
  }

  private finish(err?: Error, usage?: VerifiedUsage): void {
    this.stopIdle();
    if (this.state === 'done') return;
    this.state = 'done';
    this.link.release(this.id);
    if (usage) this.settle.resolve(usage);
    else this.settle.reject(err ?? new TransferAbortedError('internal', 'transfer ended without a usage statement'));
  }
}
