import type { WebSocket } from 'ws';
import { DELIVERED_ID_BIT } from './protocol/constants.ts';
import type { RemoteEnd } from './remote-end.ts';
import type { AgentPort } from './router.ts';

/** One transfer in flight: the relay maps (source, srcId) <-> (destination, dstId). */
export interface Transfer {
  /** Relay-unique id (hex), named in the usage statement. */
  key: string;
  /** The sending agent: connected here, or on another node. */
  src: AgentConnection | RemoteEnd;
  srcId: number;
  /** The receiving agent: connected here, or on another node. */
  dst: AgentConnection | RemoteEnd;
  dstId: number;
  /** Credit granted by the recipient and not yet used by the sender. */
  credit: number;
  bytes: number;
  ending: boolean;
  /** This node's leg id when one end is on another node. */
  leg?: number;
  /** Cross-node credit window (destination node): granted by the recipient but not yet forwarded. */
  held?: number;
  /** Cross-node credit window (destination node): forwarded to the source node and not yet used. */
  forwarded?: number;
}

const RECENT_IDS = 256;

/** A connected, authenticated agent and its soft state. */
export class AgentConnection implements AgentPort {
  readonly since = new Date();
  /** Transfers this agent sends, by its own id. */
  readonly outgoing = new Map<number, Transfer>();
  /** Transfers delivered to this agent, by the id the relay gave them. */
  readonly incoming = new Map<number, Transfer>();
  /** Destinations that made the relay pause reading this agent. */
  readonly blockedOn = new Set<AgentConnection>();
  /** Sources paused because this agent is behind. */
  readonly waiters = new Set<AgentConnection>();
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
    private readonly onDrained: (conn: AgentConnection) => void,
  ) {}

  deliver(frame: Buffer, onWritten?: (err?: Error) => void): void {
    if (this.pending === 0) this.lastProgress = Date.now();
    const len = frame.length;
    this.pending += len;
    this.ws.send(frame, { binary: true }, (err) => {
      this.pending -= len;
      this.lastProgress = Date.now();
      onWritten?.(err ?? undefined);
      this.onDrained(this);
    });
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
