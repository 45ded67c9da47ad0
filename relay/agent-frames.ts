// One job: the frames a locally connected agent sends (open, data, end, credit, abort, message), routed to the transfer's other end.
import type { Logger } from 'pino';
import { decodeFrame, encodeMessage, encodeNotice, encodeOpen } from './protocol/codec.ts';
import { DELIVERED_ID_BIT, MAX_CREDIT, type AbortCode, type FrameLimits } from './protocol/constants.ts';
import { ProtocolError } from './protocol/errors.ts';
import { recipientFull, type RecipientLimits } from './admission.ts';
import type { Backpressure } from './backpressure.ts';
import type { ClusterLegs } from './cluster-legs.ts';
import type { AgentConnection } from './connection.ts';
import type { RelayMetrics } from './metrics.ts';
import type { TransferTable } from './transfers.ts';

/** What the frame handler needs from the hub. */
export interface AgentFramesOptions {
  limits: FrameLimits & RecipientLimits;
  metrics: RelayMetrics;
  log: Logger;
  transfers: TransferTable;
  backpressure: Backpressure;
  /** Delivery via other nodes; undefined on a single node. */
  cluster: ClusterLegs | undefined;
  /** The connection of an agent connected to this node, if any. */
  resolveLocal(id: string): AgentConnection | undefined;
  /** True while the relay refuses new transfers. */
  draining(): boolean;
}

/** Handles every frame a local agent sends; a protocol violation throws {@link ProtocolError}. */
export class AgentFrames {
  constructor(private readonly o: AgentFramesOptions) {}

  /** One WebSocket message from `conn`. */
  handle(conn: AgentConnection, buf: Buffer): void {
    const frame = decodeFrame(buf, this.o.limits);
    switch (frame.kind) {
      case 'data':
        return this.data(conn, frame.id, buf, frame.payload.length);
      case 'open':
        return this.open(conn, frame.id, frame.peer, frame.meta);
      case 'end':
        return this.end(conn, frame.id);
      case 'credit':
        return this.credit(conn, frame.id, frame.bytes);
      case 'abort': {
        const t = frame.id >= DELIVERED_ID_BIT ? conn.incoming.get(frame.id) : conn.outgoing.get(frame.id);
        if (!t) return this.unknown(conn, frame.id);
        return this.o.transfers.abort(t, frame.code, frame.reason.slice(0, 100), conn);
      }
      case 'message':
        return this.message(conn, frame.id, frame.peer, frame.body);
      case 'notice':
        throw new ProtocolError('ERR_PROTOCOL_UNEXPECTED', 'agents may not send notices', 1008);
      case 'document':
        throw new ProtocolError('ERR_PROTOCOL_UNEXPECTED', 'agents may not send documents', 1008);
    }
  }

  private data(conn: AgentConnection, id: number, buf: Buffer, n: number): void {
    const t = conn.outgoing.get(id);
    if (!t) return this.unknown(conn, id);
    if (n > t.credit) throw new ProtocolError('ERR_PROTOCOL_CREDIT_EXCEEDED', `sent ${n} bytes with ${t.credit} credit`, 1008);
    if (t.ending) throw new ProtocolError('ERR_PROTOCOL_UNEXPECTED', 'data after end', 1008);
    t.credit -= n;
    t.bytes += n;
    t.lastProgress = Date.now();
    if (t.credit === 0) this.o.metrics.creditStalls.inc();
    this.o.metrics.bytesIn.inc(n);
    t.dst.forwardData(buf, t.dstId, n, conn);
  }

  private end(conn: AgentConnection, id: number): void {
    const t = conn.outgoing.get(id);
    if (!t) return this.unknown(conn, id);
    if (t.ending) throw new ProtocolError('ERR_PROTOCOL_UNEXPECTED', 'duplicate end', 1008);
    t.ending = true;
    t.dst.forwardEnd(t.dstId, (err) => (err ? this.o.transfers.abort(t, 'peer-gone', 'recipient went away before end') : this.o.transfers.complete(t)));
  }

  private credit(conn: AgentConnection, id: number, bytes: number): void {
    const t = conn.incoming.get(id);
    if (!t) return this.unknown(conn, id);
    if (t.credit + bytes > MAX_CREDIT) throw new ProtocolError('ERR_PROTOCOL_CREDIT_EXCEEDED', `outstanding credit would exceed ${MAX_CREDIT}`, 1008);
    t.credit += bytes;
    t.lastProgress = Date.now();
    t.src.forwardCredit(t, bytes);
  }

  private unknown(conn: AgentConnection, id: number): void {
    // Frames may cross an abort on the wire; only ids never used are violations.
    if (conn.wasRecent(id)) return;
    throw new ProtocolError('ERR_PROTOCOL_UNKNOWN_TRANSFER', `no transfer ${id} on this connection`, 1008);
  }

  private open(conn: AgentConnection, id: number, peer: string, meta: Buffer): void {
    if (id >= DELIVERED_ID_BIT) throw new ProtocolError('ERR_PROTOCOL_BAD_ID', `sender transfer ids must be below ${DELIVERED_ID_BIT}`, 1008);
    if (conn.outgoing.has(id)) throw new ProtocolError('ERR_PROTOCOL_DUPLICATE_TRANSFER', `transfer ${id} is already open`, 1008);
    if (this.o.draining()) return this.refuse(conn, id, peer, 'shutting-down', 'relay is shutting down');
    if (conn.outgoing.size >= this.o.limits.maxOpenTransfers)
      return this.refuse(conn, id, peer, 'too-many-transfers', `at most ${this.o.limits.maxOpenTransfers} open transfers per connection`);
    const dst = this.o.resolveLocal(peer);
    if (!dst && this.o.cluster) return this.o.cluster.openRemote(conn, id, peer, meta);
    if (!dst || dst.closing) return this.refuse(conn, id, peer, 'no-route', `${peer} is not connected`);
    const full = recipientFull(dst, conn.id, this.o.limits, this.o.metrics);
    if (full) return this.refuse(conn, id, peer, 'too-many-transfers', full);
    const t = this.o.transfers.open({ src: conn, srcId: id, dst, dstId: dst.allocateId() });
    this.o.log.debug({ transfer: t.key, from: conn.id, to: peer }, 'transfer opened');
    dst.deliver(encodeOpen(t.dstId, conn.id, meta, this.o.limits));
  }

  private refuse(conn: AgentConnection, id: number, peer: string, code: AbortCode, why: string): void {
    conn.retire(id);
    this.o.metrics.transfersAborted.inc({ reason: code });
    this.o.log.info({ from: conn.id, to: peer, code }, 'transfer refused');
    conn.forwardAbort(id, code, why);
  }

  private message(conn: AgentConnection, id: number, peer: string, body: Buffer): void {
    const dst = this.o.resolveLocal(peer);
    if (!dst && this.o.cluster) return this.o.cluster.messageRemote(conn, id, peer, body);
    if (!dst || dst.closing) {
      this.o.metrics.messages.inc({ outcome: 'no-route' });
      conn.deliver(encodeNotice('undeliverable', { id, to: peer, code: 'no-route' }, this.o.limits));
      return;
    }
    this.o.metrics.messages.inc({ outcome: 'routed' });
    dst.deliver(encodeMessage(id, conn.id, body, this.o.limits));
    this.o.backpressure.throttle(conn, dst);
  }
}
