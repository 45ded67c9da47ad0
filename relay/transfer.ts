// One job: what a transfer is, the one interface for either of its ends, and the one place a transfer is built.
import { randomBytes } from 'node:crypto';
import type { AbortCode } from './protocol/constants.ts';
import type { AgentConnection } from './connection.ts';
import type { RemoteEnd } from './remote-end.ts';

/**
 * One end of a transfer as the relay core sees it: an agent connected to this
 * node ({@link AgentConnection}) or an agent on another node reached through
 * that node's leg ({@link RemoteEnd}). Routing code talks to this interface
 * only and never asks which of the two it holds.
 */
export interface TransferEnd {
  /** The agent's id. */
  readonly id: string;
  /** True once frames to this end are pointless (the connection closes, the node is gone). */
  readonly closing: boolean;
  /** Queues one encoded frame for this end; `onWritten` runs once it left this node (or failed). */
  deliver(frame: Buffer, onWritten?: (err?: Error) => void): void;
  /** Bytes queued towards this end and not yet written. */
  pendingBytes(): number;
  /** Forwards a DATA frame of `n` payload bytes to this end (the recipient) as transfer `id`; `from` is the local sender, if any. */
  forwardData(frame: Buffer, id: number, n: number, from?: AgentConnection): void;
  /**
   * Forwards END to this end (the recipient) as transfer `id`. `delivered` runs once the
   * transfer is complete on this node; a remote end never calls it, because the node
   * holding the recipient completes the transfer and reports the usage statement back.
   */
  forwardEnd(id: number, delivered: (err?: Error) => void): void;
  /** Forwards `bytes` of credit the recipient granted to this end (the sender) of `t`. */
  forwardCredit(t: Transfer, bytes: number): void;
  /** Tells this end transfer `id` is aborted (a code this end's protocol revision does not know is sent as its older equivalent). */
  forwardAbort(id: number, code: AbortCode, reason: string): void;
  /** `t` starts: this end files it under its id. */
  adopt(t: Transfer): void;
  /** `t` is over: this end forgets it (late frames for its id are tolerated). */
  drop(t: Transfer): void;
}

/** One transfer in flight: the relay maps (source, srcId) <-> (destination, dstId). */
export interface Transfer {
  /** Relay-unique id (hex), named in the usage statement. */
  readonly key: string;
  /** The sending agent: connected here, or on another node. */
  readonly src: TransferEnd;
  readonly srcId: number;
  /** The receiving agent: connected here, or on another node. */
  readonly dst: TransferEnd;
  /** The recipient's id for the transfer (for a remote recipient: the other node's leg, once it answered). */
  dstId: number;
  /** Credit granted by the recipient and not yet used by the sender. */
  credit: number;
  bytes: number;
  ending: boolean;
  /** When data or credit last moved on this transfer (or when it opened): the idle deadline counts from here. */
  lastProgress: number;
  /** This node's leg id when one end is on another node. */
  readonly leg?: number;
  /** The end that is on another node, if any (then `leg` is set). */
  readonly remote?: RemoteEnd;
}

/** What {@link createTransfer} needs to know. */
export interface TransferSpec {
  src: TransferEnd;
  srcId: number;
  dst: TransferEnd;
  dstId: number;
  /** For a transfer crossing nodes: this node's leg id and the end on the other node. */
  cross?: { leg: number; remote: RemoteEnd };
}

/** Builds a fresh transfer with no credit and no bytes; the only constructor of {@link Transfer}. */
export function createTransfer(spec: TransferSpec): Transfer {
  return {
    key: randomBytes(16).toString('hex'),
    src: spec.src,
    srcId: spec.srcId,
    dst: spec.dst,
    dstId: spec.dstId,
    credit: 0,
    bytes: 0,
    ending: false,
    lastProgress: Date.now(),
    ...(spec.cross ? { leg: spec.cross.leg, remote: spec.cross.remote } : {}),
  };
}
