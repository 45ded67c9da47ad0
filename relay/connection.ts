// One job: a connected agent as one end of its transfers (its socket queue, its transfer ids, its soft state).
import type { WebSocket } from 'ws';
import { encodeAbort, encodeCredit, encodeEnd, setFrameId } from './protocol/codec.ts';
import { abortCodeFor, DELIVERED_ID_BIT, type AbortCode } from './protocol/constants.ts';
import type { SendFrame } from './frame-writer.ts';
import type { AgentPort } from './router.ts';
import type { Transfer, TransferEnd } from './transfer.ts';

export type { Transfer } from './transfer.ts';

/** What a connection tells the relay core about its socket. */
export interface ConnectionHooks {
  /** The connection's queue shrank. */
  drained(conn: AgentConnection): void;
  /** `n` transfer payload bytes reached the socket. */
  wrote(n: number): void;
  /** `src` just queued a frame towards `dst`: pause reading it if `dst` is behind. */
  pace(src: AgentConnection, dst: AgentConnection): void;
}

const RECENT_IDS = 256;

/** A connected, authenticated agent and its soft state. */
export class AgentConnection implements AgentPort, TransferEnd {
  readonly since = new Date();
  /** Transfers this agent sends, by its own id. */
  readonly outgoing = new Map<number, Transfer>();
  /** Transfers delivered to this agent, by the id the relay gave them. */
  readonly incoming = new Map<number, Transfer>();
  /** Destinations that made the relay pause reading this agent. */
  readonly blockedOn = new Set<AgentConnection>();
  /** Sources paused because this agent is behind. */
  readonly waiters = new Set<AgentConnection>();
  /** Open incoming transfers by sender id (the fair share of this agent's slots). */
  private readonly incomingFrom = new Map<string, number>();
  /** Ids that ended recently: frames still in flight for them are ignored, not fatal. */
  private readonly recent = new Set<number>();
  private pending = 0;
  private nextId = DELIVERED_ID_BIT;
  /** When the pending queue last made progress (or became non-empty). */
  lastProgress = Date.now();
  closing = false;
  /** Messages of this agent waiting on other nodes' answers. */
  remoteRequests = 0;
  /** True while reading is paused because too many of those are waiting. */
  remoteBlocked = false;

  constructor(
    readonly id: string,
    readonly serial: string,
    readonly ws: WebSocket,
    private readonly hooks: ConnectionHooks,
    /** Writes one binary message to the agent's socket (relay/frame-writer.ts). */
    private readonly send: SendFrame,
    /** The protocol revision the agent announced (1 when it said nothing). */
    readonly revision = 1,
  ) {}

  deliver(frame: Buffer, onWritten?: (err?: Error) => void): void {
    if (this.pending === 0) this.lastProgress = Date.now();
    const len = frame.length;
    this.pending += len;
    this.send(frame, (err) => {
      this.pending -= len;
      this.lastProgress = Date.now();
      onWritten?.(err);
      this.hooks.drained(this);
    });
  }

  forwardData(frame: Buffer, id: number, n: number, from?: AgentConnection): void {
    setFrameId(frame, id);
    this.deliver(frame, (err) => {
      if (!err) this.hooks.wrote(n);
    });
    if (from) this.hooks.pace(from, this);
  }

  forwardEnd(id: number, delivered: (err?: Error) => void): void {
    this.deliver(encodeEnd(id), delivered);
  }

  forwardCredit(t: Transfer, bytes: number): void {
    this.deliver(encodeCredit(t.srcId, bytes));
  }

  forwardAbort(id: number, code: AbortCode, reason: string): void {
    this.deliver(encodeAbort(id, abortCodeFor(code, this.revision), reason));
  }

  /** Transfers from `sender` open towards this agent now. */
  openFrom(sender: string): number {
    return this.incomingFrom.get(sender) ?? 0;
  }

  adopt(t: Transfer): void {
    if (t.src === this) this.outgoing.set(t.srcId, t);
    if (t.dst === this) {
      this.incoming.set(t.dstId, t);
      this.incomingFrom.set(t.src.id, this.openFrom(t.src.id) + 1);
    }
  }

  drop(t: Transfer): void {
    if (t.src === this) {
      this.outgoing.delete(t.srcId);
      this.retire(t.srcId);
    }
    if (t.dst === this && this.incoming.delete(t.dstId)) {
      this.retire(t.dstId);
      const left = this.openFrom(t.src.id) - 1;
      if (left > 0) this.incomingFrom.set(t.src.id, left);
      else this.incomingFrom.delete(t.src.id);
    }
  }

  pendingBytes(): number {
    return this.pending;
  }

  /** A fresh id for a transfer delivered to this agent, never one in use. */
  allocateId(): number {
    for (;;) {
      const id = this.nextId;
      this.nextId = this.nextId >= 0xffff_ffff ? DELIVERED_ID_BIT : this.nextId + 1;
      if (!this.incoming.has(id) && !this.recent.has(id)) return id;
    }
  }

  /** Remembers an id that just ended so late frames for it are not protocol errors. */
  retire(id: number): void {
    this.recent.add(id);
    if (this.recent.size > RECENT_IDS) {
      const first = this.recent.values().next().value;
      if (first !== undefined) this.recent.delete(first);
    }
  }

  wasRecent(id: number): boolean {
    return this.recent.has(id);
  }
}
