// One job: the far end of a transfer crossing nodes (an agent on another node, reached through that node's leg).
import { encodeAbort, encodeCredit, encodeEnd, setFrameId } from './protocol/codec.ts';
import type { AbortCode } from './protocol/constants.ts';
import type { RemoteDelivery } from './router.ts';
import type { Transfer, TransferEnd } from './transfer.ts';

/**
 * The far side of a cross-node transfer as the hub sees it: an agent on
 * another node, reached through that node's leg of the transfer. It also
 * keeps the cross-node credit window when it is the sender's end.
 */
export class RemoteEnd implements TransferEnd {
  /** Node holding the agent; undefined until the open is answered. */
  node: string | undefined;
  /** The other node's leg id (frames to it carry this id). */
  leg = 0;
  closing = false;
  /** Last time a frame or ping answer came from the other node for this transfer. */
  heard = Date.now();
  /** Credit granted by the local recipient but not yet forwarded to the sender's node. */
  private held = 0;
  /** Credit forwarded to the sender's node and not yet used. */
  private forwarded = 0;
  private queue: Buffer[] = [];

  constructor(
    /** The remote agent's id. */
    readonly id: string,
    private readonly remote: RemoteDelivery,
    /** Called when credit is held back because the cross-node window is full. */
    private readonly onHeld: () => void,
    node?: string,
    leg?: number,
  ) {
    if (node !== undefined && leg !== undefined) this.bind(node, leg);
  }

  /** The other node answered the open: frames queued meanwhile (END, ABORT) go out now. */
  bind(node: string, leg: number): void {
    this.node = node;
    this.leg = leg;
    this.heard = Date.now();
    const queued = this.queue;
    this.queue = [];
    for (const f of queued) this.deliver(f);
  }

  /** Sends a frame to the other node's leg; `onWritten` runs once it was handed to NATS. */
  deliver(frame: Buffer, onWritten?: (err?: Error) => void): void {
    if (this.closing) return onWritten?.(new Error('remote end gone'));
    if (this.node === undefined) {
      this.queue.push(frame);
      return onWritten?.();
    }
    setFrameId(frame, this.leg);
    this.remote.send(this.node, frame);
    onWritten?.();
  }

  pendingBytes(): number {
    return 0;
  }

  forwardData(frame: Buffer): void {
    this.deliver(frame);
  }

  forwardEnd(id: number): void {
    // The node holding the recipient completes the transfer and sends the usage statement back.
    this.deliver(encodeEnd(id));
  }

  /** Credit from the local recipient: forwarded while at most the cluster window is outstanding on the sender's node. */
  forwardCredit(t: Transfer, bytes: number): void {
    this.held += bytes;
    this.releaseCredit(t);
  }

  forwardAbort(id: number, code: AbortCode, reason: string): void {
    // Relay nodes of one cluster speak the same revision.
    this.deliver(encodeAbort(id, code, reason));
  }

  /** `n` bytes of data arrived from the sender's node: they used forwarded credit, so more may go. */
  consumed(t: Transfer, n: number): void {
    this.forwarded -= n;
    this.releaseCredit(t);
  }

  private releaseCredit(t: Transfer): void {
    const give = Math.min(this.held, this.remote.window - this.forwarded);
    if (give <= 0) {
      if (this.held > 0) this.onHeld();
      return;
    }
    this.held -= give;
    this.forwarded += give;
    this.deliver(encodeCredit(t.srcId, give));
  }

  adopt(): void {
    // Legs are filed by the transfer table; nothing is kept per id here.
  }

  drop(): void {
    // As adopt: late frames from the other node find no leg and are ignored.
  }
}
