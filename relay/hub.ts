// One job: the lifecycle of agent connections (accept, greet, close, revoke, drain) and the deadlines that watch them.
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { WebSocket } from 'ws';
import { encodeDocument, encodeNotice } from './protocol/codec.ts';
import {
  CLOSE_CODES,
  DOCUMENT_SINCE_REVISION,
  FRAME_PREFIX,
  PROTOCOL_REVISION,
  type AbortCode,
  type DocumentType,
  type FrameLimits,
} from './protocol/constants.ts';
import { ProtocolError } from './protocol/errors.ts';
import type { RecipientLimits } from './admission.ts';
import { AgentFrames } from './agent-frames.ts';
import { Backpressure } from './backpressure.ts';
import { ClusterLegs } from './cluster-legs.ts';
import { AgentConnection } from './connection.ts';
import { frameWriter } from './frame-writer.ts';
import type { RelayMetrics } from './metrics.ts';
import type { Router } from './router.ts';
import { TransferTable, type Meter } from './transfers.ts';

/** Settings the hub enforces. */
export interface HubOptions {
  limits: FrameLimits & RecipientLimits & { highWaterMark: number; tlsWritePiece: number; writeTimeoutMs: number; transferIdleMs: number };
  router: Router;
  metrics: RelayMetrics;
  log: Logger;
  /** Signs the usage statement of a completed transfer. */
  meter: Meter;
  /** The federation documents (CRL, member directory) in force, handed to every agent after `ready`. */
  documents?: () => Array<{ type: DocumentType; body: Buffer }>;
}

/** How long a closed connection may linger in the close handshake before it is destroyed. */
const CLOSE_GRACE_MS = 2_000;

/** The relay core: connections, and through its parts the transfer table, flow control, cluster legs and metering. */
export class Hub {
  readonly connections = new Set<AgentConnection>();
  private draining = false;
  private readonly watchdog: NodeJS.Timeout;
  private readonly transfers: TransferTable;
  private readonly backpressure: Backpressure;
  private readonly cluster: ClusterLegs | undefined;
  private readonly frames: AgentFrames;

  constructor(private readonly opts: HubOptions) {
    const { limits, metrics, log, router } = opts;
    this.transfers = new TransferTable({ limits, metrics, log, meter: opts.meter });
    this.backpressure = new Backpressure(limits.highWaterMark, metrics);
    const shared = { limits, metrics, log, transfers: this.transfers, resolveLocal: (id: string) => this.resolveLocal(id), draining: () => this.draining };
    this.cluster = router.remote ? new ClusterLegs({ ...shared, remote: router.remote, resumeIfFree: (c) => this.backpressure.resumeIfFree(c) }) : undefined;
    this.frames = new AgentFrames({ ...shared, backpressure: this.backpressure, cluster: this.cluster });
    const every = Math.max(50, Math.min(1000, Math.floor(Math.min(limits.writeTimeoutMs, limits.transferIdleMs) / 4)));
    this.watchdog = setInterval(() => this.checkDeadlines(), every);
    this.watchdog.unref();
  }

  get activeTransfers(): number {
    return this.transfers.size;
  }

  /** Bytes queued towards all agents. */
  bufferedBytes(): number {
    let n = 0;
    for (const c of this.connections) n += c.pendingBytes();
    return n;
  }

  /** The connection through which an agent is attached to this node, if it is. */
  private resolveLocal(id: string): AgentConnection | undefined {
    const port = this.opts.router.resolve(id);
    // The router hands back ports; on this node every port it holds is one of our connections.
    return port instanceof AgentConnection ? port : undefined;
  }

  /** Takes over an upgraded, authenticated WebSocket. */
  accept(ws: WebSocket, socket: Duplex, peer: { id: string; serial: string; revision?: number }): AgentConnection {
    const bp = this.backpressure;
    const metrics = this.opts.metrics;
    const conn = new AgentConnection(
      peer.id,
      peer.serial,
      ws,
      {
        drained: (c) => bp.drained(c),
        wrote: (n) => metrics.bytesOut.inc(n),
        pace: (src, dst) => bp.throttle(src, dst),
      },
      frameWriter(ws, socket, this.opts.limits.tlsWritePiece),
      peer.revision,
    );
    this.connections.add(conn);
    metrics.connections.inc();
    const replaced = this.opts.router.attach(conn);
    if (replaced instanceof AgentConnection) {
      this.opts.log.info({ agent: peer.id, serial: replaced.serial }, 'connection replaced by a newer one');
      this.close(replaced, CLOSE_CODES.replaced, 'replaced by a newer connection', 'replaced');
    }
    this.listen(conn);
    this.opts.log.info({ agent: peer.id, serial: peer.serial }, 'agent connected');
    // On a cluster, greet only once other nodes can find the agent, so a peer told "ready" is routable everywhere.
    const attached = this.opts.router.whenAttached?.(conn);
    if (attached)
      attached.then(
        () => this.greet(conn),
        () => this.greet(conn),
      );
    else this.greet(conn);
    return conn;
  }

  private listen(conn: AgentConnection): void {
    conn.ws.on('message', (data: Buffer, isBinary: boolean) => this.onMessage(conn, data, isBinary));
    conn.ws.on('close', (code: number) => this.onClose(conn, code));
    conn.ws.on('error', (err: Error & { code?: string }) => {
      // ws reports an oversized frame (1009) or bad framing here before closing.
      this.opts.metrics.framesRejected.inc({ code: err.code ?? 'WS_ERROR' });
      this.opts.log.warn({ agent: conn.id, code: err.code }, 'websocket error');
    });
  }

  private greet(conn: AgentConnection): void {
    if (conn.closing) return;
    const l = this.opts.limits;
    const limits = {
      maxFrame: l.maxFrame,
      maxHeader: l.maxHeader,
      maxMessage: l.maxMessage,
      maxOpenTransfers: l.maxOpenTransfers,
      maxTransfersPerSender: l.maxTransfersPerSender,
      transferIdleMs: l.transferIdleMs,
    };
    conn.deliver(encodeNotice('ready', { agent: conn.id, limits, revision: PROTOCOL_REVISION }, l));
    for (const d of this.opts.documents?.() ?? []) {
      const frame = this.documentFrame(d.type, d.body);
      if (frame) this.sendDocument(conn, d.type, frame);
    }
    if (this.draining) conn.deliver(encodeNotice('shutting-down', { deadlineMs: 0 }, l));
  }

  private onMessage(conn: AgentConnection, data: Buffer, isBinary: boolean): void {
    if (conn.closing) return;
    try {
      if (!isBinary) throw new ProtocolError('ERR_PROTOCOL_UNEXPECTED', 'text frames are not part of the protocol', 1008);
      this.frames.handle(conn, data);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      this.opts.metrics.framesRejected.inc({ code: err.code });
      this.opts.log.warn({ agent: conn.id, code: err.code, closeCode: err.closeCode }, 'protocol violation; closing connection');
      this.close(conn, err.closeCode, err.code, 'protocol-error');
    }
  }

  private checkDeadlines(): void {
    const now = Date.now();
    if (this.cluster && this.transfers.crossingCount > 0) this.cluster.checkNodes();
    const idle = this.transfers.abortIdle(now, this.opts.limits.transferIdleMs);
    if (idle > 0) this.opts.log.warn({ transfers: idle, idleMs: this.opts.limits.transferIdleMs }, 'idle transfers aborted');
    for (const conn of this.connections) {
      if (conn.closing || conn.pendingBytes() === 0 || now - conn.lastProgress < this.opts.limits.writeTimeoutMs) continue;
      this.opts.metrics.writeTimeouts.inc();
      this.opts.log.warn({ agent: conn.id, pending: conn.pendingBytes() }, 'write deadline missed; aborting its transfers');
      this.close(conn, CLOSE_CODES.writeTimeout, 'write-timeout', 'write-timeout');
    }
  }

  private abortAll(conn: AgentConnection, code: AbortCode, reason: string, by?: AgentConnection): void {
    for (const t of [...conn.outgoing.values(), ...conn.incoming.values()]) this.transfers.abort(t, code, reason, by);
  }

  /** Aborts the connection's transfers with `reason` (told to both ends) and closes it. */
  close(conn: AgentConnection, closeCode: number, closeReason: string, reason: AbortCode): void {
    if (conn.closing) return;
    this.abortAll(conn, reason, closeReason);
    conn.closing = true;
    this.backpressure.release(conn);
    this.opts.router.detach(conn);
    conn.ws.close(closeCode, closeReason.slice(0, 120));
    setTimeout(() => conn.ws.terminate(), CLOSE_GRACE_MS).unref();
  }

  private onClose(conn: AgentConnection, code: number): void {
    if (!this.connections.delete(conn)) return;
    this.opts.metrics.connections.dec();
    this.abortAll(conn, 'peer-gone', `${conn.id} disconnected`, conn);
    conn.closing = true;
    this.backpressure.release(conn);
    this.opts.router.detach(conn);
    this.opts.log.info({ agent: conn.id, code }, 'agent disconnected');
  }

  /** Hands a new CRL or directory to every connected agent that understands DOCUMENT frames; returns how many got it. */
  publish(type: DocumentType, body: Buffer): number {
    const frame = this.documentFrame(type, body);
    if (!frame) return 0;
    let n = 0;
    // One frame for every connection: frames are never changed once encoded.
    for (const conn of this.connections) if (this.sendDocument(conn, type, frame)) n += 1;
    return n;
  }

  /** The DOCUMENT frame for a document, or undefined (logged and counted) when it does not fit `limits.maxFrame`. */
  private documentFrame(type: DocumentType, body: Buffer): Buffer | undefined {
    if (FRAME_PREFIX + 1 + body.length > this.opts.limits.maxFrame) {
      this.opts.metrics.documentsRefused.inc({ type });
      this.opts.log.error(
        { type, bytes: body.length, maxFrame: this.opts.limits.maxFrame },
        'federation document larger than limits.maxFrame; not distributed',
      );
      return undefined;
    }
    return encodeDocument(type, body, this.opts.limits);
  }

  private sendDocument(conn: AgentConnection, type: DocumentType, frame: Buffer): boolean {
    // An older agent's decoder closes the connection on an unknown frame kind: it keeps its CRL file as before.
    if (conn.closing || conn.revision < DOCUMENT_SINCE_REVISION) return false;
    conn.deliver(frame);
    this.opts.metrics.documentsSent.inc({ type });
    return true;
  }

  /** Closes every connection of a certificate serial now revoked. */
  revoke(isRevoked: (serial: string) => boolean): number {
    let n = 0;
    for (const conn of this.connections) {
      if (conn.closing || !isRevoked(conn.serial)) continue;
      this.opts.log.warn({ agent: conn.id, serial: conn.serial }, 'certificate revoked; closing connection');
      this.close(conn, CLOSE_CODES.revoked, 'certificate revoked', 'peer-gone');
      n += 1;
    }
    return n;
  }

  /** Refuses new transfers and tells every agent the relay is going away. */
  startDraining(deadlineMs: number): void {
    this.draining = true;
    for (const conn of this.connections) if (!conn.closing) conn.deliver(encodeNotice('shutting-down', { deadlineMs }, this.opts.limits));
  }

  /** Aborts whatever is left and closes every connection. */
  closeAll(): void {
    clearInterval(this.watchdog);
    for (const conn of this.connections) this.close(conn, CLOSE_CODES.goingAway, 'relay shutting down', 'shutting-down');
  }
}
