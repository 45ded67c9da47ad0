// One job: the legs of transfers and messages crossing relay nodes (opens both ways, frames from other nodes, dead-node probes).
import type { Logger } from 'pino';
import { decodeFrame, encodeMessage, encodeNotice, encodeOpen } from './protocol/codec.ts';
import type { AbortCode, FrameLimits } from './protocol/constants.ts';
import { ProtocolError } from './protocol/errors.ts';
import { recipientFull, type RecipientLimits } from './admission.ts';
import type { AgentConnection } from './connection.ts';
import type { RelayMetrics } from './metrics.ts';
import { RemoteEnd } from './remote-end.ts';
import type { RemoteDelivery, RemoteOpen } from './router.ts';
import type { Transfer } from './transfer.ts';
import type { TransferTable } from './transfers.ts';

/** Presence requests one connection may have waiting on other nodes before the relay stops reading it. */
const MAX_REMOTE_REQUESTS = 256;

/** What the cluster side needs from the hub. */
export interface ClusterLegsOptions {
  remote: RemoteDelivery;
  limits: FrameLimits & RecipientLimits;
  metrics: RelayMetrics;
  log: Logger;
  transfers: TransferTable;
  /** The connection of an agent connected to this node, if any. */
  resolveLocal(id: string): AgentConnection | undefined;
  /** True while the relay refuses new transfers. */
  draining(): boolean;
  /** Resumes reading `conn` unless something else still holds it. */
  resumeIfFree(conn: AgentConnection): void;
}

/** Transfers and messages between this node's agents and agents on other nodes. */
export class ClusterLegs {
  private readonly probing = new Set<string>();

  constructor(private readonly o: ClusterLegsOptions) {
    o.remote.bind({
      open: (fromNode, leg, from, to, meta) => this.remoteOpen(fromNode, leg, from, to, meta),
      message: (to, frame) => this.remoteMessage(to, frame),
      frame: (frame) => this.remoteFrame(frame),
    });
  }

  private remoteEnd(id: string, node?: string, leg?: number): RemoteEnd {
    return new RemoteEnd(id, this.o.remote, () => this.o.metrics.natsCreditHeld.inc(), node, leg);
  }

  /** OPEN to an agent not connected here: ask the cluster; the sender waits for credit meanwhile. */
  openRemote(conn: AgentConnection, id: number, peer: string, meta: Buffer): void {
    const end = this.remoteEnd(peer);
    const t = this.o.transfers.open({ src: conn, srcId: id, dst: end, dstId: 1, cross: { leg: this.o.transfers.allocateLeg(), remote: end } });
    const refused = (code: AbortCode, why: string): void => {
      if (!this.o.transfers.forget(t)) return;
      this.o.metrics.transfersAborted.inc({ reason: code });
      this.o.log.info({ from: conn.id, to: peer, code }, 'transfer refused');
      if (!conn.closing) conn.forwardAbort(id, code, why);
    };
    this.o.remote.open(peer, conn.id, t.leg as number, meta).then(
      (r) => {
        if ('refused' in r) return refused(r.refused, r.reason);
        t.dstId = r.leg;
        // END or ABORT the sender issued while the open was in flight go out now.
        end.bind(r.node, r.leg);
        this.o.log.debug({ transfer: t.key, from: conn.id, to: peer, node: r.node }, 'transfer opened via another node');
      },
      () => refused('internal', 'cluster open failed'),
    );
  }

  /** MESSAGE to an agent not connected here: route it through the cluster. */
  messageRemote(conn: AgentConnection, id: number, peer: string, body: Buffer): void {
    const frame = encodeMessage(id, conn.id, body, this.o.limits);
    conn.remoteRequests += 1;
    if (conn.remoteRequests >= MAX_REMOTE_REQUESTS && !conn.remoteBlocked) {
      conn.remoteBlocked = true;
      conn.ws.pause();
    }
    const settle = (code: AbortCode | undefined): void => {
      conn.remoteRequests -= 1;
      if (conn.remoteBlocked && conn.remoteRequests <= MAX_REMOTE_REQUESTS / 2) {
        conn.remoteBlocked = false;
        this.o.resumeIfFree(conn);
      }
      this.o.metrics.messages.inc({ outcome: code ?? 'routed' });
      if (code && !conn.closing) conn.deliver(encodeNotice('undeliverable', { id, to: peer, code }, this.o.limits));
    };
    this.o.remote.message(peer, frame, settle);
  }

  /** Another node opens a transfer to an agent connected here. */
  private remoteOpen(fromNode: string, leg: number, from: string, to: string, meta: Buffer): RemoteOpen {
    if (this.o.draining()) return { refused: 'shutting-down', reason: 'relay node is shutting down' };
    const dst = this.o.resolveLocal(to);
    if (!dst || dst.closing) return { refused: 'no-route', reason: `${to} is not connected` };
    const full = recipientFull(dst, from, this.o.limits, this.o.metrics);
    if (full) return { refused: 'too-many-transfers', reason: full };
    const src = this.remoteEnd(from, fromNode, leg);
    const t = this.o.transfers.open({ src, srcId: leg, dst, dstId: dst.allocateId(), cross: { leg: this.o.transfers.allocateLeg(), remote: src } });
    this.o.log.debug({ transfer: t.key, from, to, node: fromNode }, 'transfer opened from another node');
    dst.deliver(encodeOpen(t.dstId, from, meta, this.o.limits));
    return { node: this.o.remote.nodeId, leg: t.leg as number };
  }

  /** Another node routes a message to an agent connected here. */
  private remoteMessage(to: string, frame: Buffer): AbortCode | undefined {
    const dst = this.o.resolveLocal(to);
    if (!dst || dst.closing) return 'no-route';
    dst.deliver(frame);
    return undefined;
  }

  /** A transfer frame from another node; its id is one of our legs. */
  private remoteFrame(buf: Buffer): void {
    let frame;
    try {
      frame = decodeFrame(buf, this.o.limits);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      this.o.metrics.framesRejected.inc({ code: err.code });
      return;
    }
    const t = this.o.transfers.byLeg(frame.id);
    // Frames may cross an abort between nodes.
    if (!t?.remote) return;
    const end = t.remote;
    end.heard = Date.now();
    const fromSrc = t.src === end;
    switch (frame.kind) {
      case 'data':
        if (fromSrc && !t.ending) this.dataFromNode(t, end, buf, frame.payload.length);
        return;
      case 'end':
        if (!fromSrc || t.ending) return;
        t.ending = true;
        t.dst.forwardEnd(t.dstId, (err) => (err ? this.o.transfers.abort(t, 'peer-gone', 'recipient went away before end') : this.o.transfers.complete(t)));
        return;
      case 'credit':
        if (fromSrc) return;
        t.credit += frame.bytes;
        t.lastProgress = Date.now();
        t.src.forwardCredit(t, frame.bytes);
        return;
      case 'abort':
        return this.o.transfers.abort(t, frame.code, frame.reason.slice(0, 100), end);
      case 'notice':
        if (!fromSrc && frame.type === 'usage') this.o.transfers.completedRemotely(t, frame.body);
        return;
      default:
        return;
    }
  }

  private dataFromNode(t: Transfer, end: RemoteEnd, buf: Buffer, n: number): void {
    if (n > t.credit) return this.o.transfers.abort(t, 'protocol-error', 'relay node sent data beyond credit');
    t.credit -= n;
    t.bytes += n;
    t.lastProgress = Date.now();
    t.dst.forwardData(buf, t.dstId, n);
    end.consumed(t, n);
  }

  /** Probes nodes we have legs with and heard nothing from lately; aborts their transfers when they are gone. */
  checkNodes(): void {
    const now = Date.now();
    const nodes = new Set<string>();
    for (const t of this.o.transfers.crossing) {
      const node = t.remote?.node;
      if (node !== undefined && now - (t.remote as RemoteEnd).heard > this.o.remote.nodeCheckMs && !this.probing.has(node)) nodes.add(node);
    }
    for (const node of nodes) this.probe(node);
  }

  private probe(node: string): void {
    this.probing.add(node);
    void this.o.remote.probe(node).then((alive) => {
      this.probing.delete(node);
      const at = Date.now();
      for (const t of [...this.o.transfers.crossing]) {
        const end = t.remote;
        if (end?.node !== node) continue;
        if (alive) {
          end.heard = at;
          continue;
        }
        end.closing = true;
        this.o.transfers.abort(t, 'peer-gone', 'relay node of the peer is gone');
      }
      if (!alive) this.o.log.warn({ node }, 'relay node does not answer; its transfers were aborted');
    });
  }
}
