import { setFrameId } from './protocol/codec.ts';
import type { RemoteDelivery } from './router.ts';

/**
 * The far side of a cross-node transfer as the hub sees it: an agent on
 * another node, reached through that node's leg of the transfer.
 */
export class RemoteEnd {
  /** Node holding the agent; undefined until the open is answered. */
  node: string | undefined;
  /** The other node's leg id (frames to it carry this id). */
  leg = 0;
  closing = false;
  /** Last time a frame or ping answer came from the other node for this transfer. */
  heard = Date.now();
  private queue: Buffer[] = [];

  constructor(
    /** The remote agent's id. */
    readonly id: string,
    private readonly remote: RemoteDelivery,
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
}
