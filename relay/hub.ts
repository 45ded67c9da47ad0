import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { WebSocket } from 'ws';
import { decodeFrame, encodeAbort, encodeCredit, encodeEnd, encodeMessage, encodeNotice, encodeOpen, setFrameId } from './protocol/codec.ts';
import { CLOSE_CODES, DELIVERED_ID_BIT, MAX_CREDIT, type AbortCode, type FrameLimits } from './protocol/constants.ts';
import { ProtocolError } from './protocol/errors.ts';
import type { SignedUsageStatement } from './protocol/usage.ts';
import { AgentConnection, type Transfer } from './connection.ts';
import type { RelayMetrics } from './metrics.ts';
import { RemoteEnd } from './remote-end.ts';
import type { RemoteDelivery, RemoteOpen, Router } from './router.ts';

/** Settings the hub enforces. */
export interface HubOptions {
  limits: FrameLimits & { maxOpenTransfers: number; highWaterMark: number; writeTimeoutMs: number };
  router: Router;
  metrics: RelayMetrics;
  log: Logger;
  /** Signs the usage statement of a completed transfer. */
  meter: (t: { transferId: string; from: string; to: string; bytes: number; completedAt: Date }) => SignedUsageStatement;
}

/** How long a closed connection may linger in the close handshake before it is destroyed. */
const CLOSE_GRACE_MS = 2_000;
/** Presence requests one connection may have waiting on other nodes before the relay stops reading it. */
const MAX_REMOTE_REQUESTS = 256;

/** The relay core: connections, the transfer table, flow control and metering. */
export class Hub {
  readonly connections = new Set<AgentConnection>();
  private readonly transfers = new Set<Transfer>();
  private draining = false;
  private readonly watchdog: NodeJS.Timeout;
  /** Transfers with one end on another node, by this node's leg id. */
  private readonly legs = new Map<number, Transfer>();
  private nextLeg = 1;
  private readonly remote: RemoteDelivery | undefined;
  private readonly probing = new Set<string>();

  constructor(private readonly opts: HubOptions) {
    const every = Math.max(50, Math.min(1000, Math.floor(opts.limits.writeTimeoutMs / 4)));
    this.watchdog = setInterval(() => this.checkDeadlines(), every);
    this.watchdog.unref();
    this.remote = opts.router.remote;
    this.remote?.bind({
      open: (fromNode, leg, from, to, meta) => this.remoteOpen(fromNode, leg, from, to, meta),
      message: (to, frame) => this.remoteMessage(to, frame),
      frame: (frame) => this.remoteFrame(frame),
    });
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

  /** Takes over an upgraded, authenticated WebSocket. */
  accept(ws: WebSocket, peer: { id: string; serial: string }): AgentConnection {
    const conn = new AgentConnection(peer.id, peer.serial, ws, (c) => this.onDrained(c));
    this.connections.add(conn);
    this.opts.metrics.connections.inc();
    const replaced = this.opts.router.attach(conn);
    if (replaced instanceof AgentConnection) {
      this.opts.log.info({ agent: peer.id, serial: replaced.serial }, 'connection replaced by a newer one');
      this.close(replaced, CLOSE_CODES.replaced, 'replaced by a newer connection', 'replaced');
    }
    ws.on('message', (data: Buffer, isBinary: boolean) => this.onMessage(conn, data, isBinary));
    ws.on('close', (code: number) => this.onClose(conn, code));
    ws.on('error', (err: Error & { code?: string }) => {
      // ws reports an oversized frame (1009) or bad framing here before closing.
      this.opts.metrics.framesRejected.inc({ code: err.code ?? 'WS_ERROR' });
      this.opts.log.warn({ agent: conn.id, code: err.code }, 'websocket error');
    });
    this.opts.log.info({ agent: peer.id, serial: peer.serial }, 'agent connected');
    const greet = (): void => {
      if (conn.closing) return;
      conn.deliver(encodeNotice('ready', { agent: peer.id, limits: this.wireLimits() }, this.opts.limits));
      if (this.draining) conn.deliver(encodeNotice('shutting-down', { deadlineMs: 0 }, this.opts.limits));
    };
    // On a cluster, greet only once other nodes can find the agent, so a peer told "ready" is routable everywhere.
    const attached = this.opts.router.whenAttached?.(conn);
    if (attached) attached.then(greet, greet);
    else greet();
    return conn;
  }

  private wireLimits(): Record<string, number> {
    const l = this.opts.limits;
    return { maxFrame: l.maxFrame, maxHeader: l.maxHeader, maxMessage: l.maxMessage, maxOpenTransfers: l.maxOpenTransfers };
  }

  private onMessage(conn: AgentConnection, data: Buffer, isBinary: boolean): void {
    if (conn.closing) return;
    try {
      if (!isBinary) throw new ProtocolError('ERR_PROTOCOL_UNEXPECTED', 'text frames are not part of the protocol', 1008);
      this.handle(conn, data);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      this.opts.metrics.framesRejected.inc({ code: err.code });
      this.opts.log.warn({ agent: conn.id, code: err.code, closeCode: err.closeCode }, 'protocol violation; closing connection');
      this.close(conn, err.closeCode, err.code, 'protocol-error');
    }
  }

  private handle(conn: AgentConnection, buf: Buffer): void {
    const frame = decodeFrame(buf, this.opts.limits);
    switch (frame.kind) {
      case 'data': {
        const t = conn.outgoing.get(frame.id);
        if (!t) return this.unknown(conn, frame.id);
        const n = frame.payload.length;
        if (n > t.credit) throw new ProtocolError('ERR_PROTOCOL_CREDIT_EXCEEDED', `sent ${n} bytes with ${t.credit} credit`, 1008);
        if (t.ending) throw new ProtocolError('ERR_PROTOCOL_UNEXPECTED', 'data after end', 1008);
        t.credit -= n;
        t.bytes += n;
        if (t.credit === 0) this.opts.metrics.creditStalls.inc();
        this.opts.metrics.bytesIn.inc(n);
        if (t.dst instanceof RemoteEnd) return t.dst.deliver(buf);
        setFrameId(buf, t.dstId);
        t.dst.deliver(buf, (err) => {
          if (!err) this.opts.metrics.bytesOut.inc(n);
        });
        this.throttle(conn, t.dst);
        return;
      }
      case 'open':
        return this.open(conn, frame.id, frame.peer, frame.meta);
      case 'end': {
        const t = conn.outgoing.get(frame.id);
        if (!t) return this.unknown(conn, frame.id);
        if (t.ending) throw new ProtocolError('ERR_PROTOCOL_UNEXPECTED', 'duplicate end', 1008);
        t.ending = true;
        // Across nodes the destination node completes the transfer and sends the usage statement back.
        if (t.dst instanceof RemoteEnd) return t.dst.deliver(encodeEnd(t.dstId));
        t.dst.deliver(encodeEnd(t.dstId), (err) => (err ? this.abort(t, 'peer-gone', 'recipient went away before end') : this.complete(t)));
        return;
      }
      case 'credit': {
        const t = conn.incoming.get(frame.id);
        if (!t) return this.unknown(conn, frame.id);
        if (t.credit + frame.bytes > MAX_CREDIT) throw new ProtocolError('ERR_PROTOCOL_CREDIT_EXCEEDED', `outstanding credit would exceed ${MAX_CREDIT}`, 1008);
        t.credit += frame.bytes;
        if (t.src instanceof RemoteEnd) {
          t.held = (t.held ?? 0) + frame.bytes;
          this.releaseCredit(t);
          return;
        }
        t.src.deliver(encodeCredit(t.srcId, frame.bytes));
        return;
      }
      case 'abort': {
        const t = frame.id >= DELIVERED_ID_BIT ? conn.incoming.get(frame.id) : conn.outgoing.get(frame.id);
        if (!t) return this.unknown(conn, frame.id);
        this.abort(t, frame.code, frame.reason.slice(0, 100), conn);
        return;
      }
      case 'message': {
        const dst = this.opts.router.resolve(frame.peer);
        if (!(dst instanceof AgentConnection) && this.remote) return this.messageRemote(conn, this.remote, frame.id, frame.peer, frame.body);
        if (!(dst instanceof AgentConnection) || dst.closing) {
          this.opts.metrics.messages.inc({ outcome: 'no-route' });
          conn.deliver(encodeNotice('undeliverable', { id: frame.id, to: frame.peer, code: 'no-route' }, this.opts.limits));
          return;
        }
        this.opts.metrics.messages.inc({ outcome: 'routed' });
        dst.deliver(encodeMessage(frame.id, conn.id, frame.body, this.opts.limits));
        this.throttle(conn, dst);
        return;
      }
      case 'notice':
        throw new ProtocolError('ERR_PROTOCOL_UNEXPECTED', 'agents may not send notices', 1008);
    }
  }

  private unknown(conn: AgentConnection, id: number): void {
    // Frames may cross an abort on the wire; only ids never used are violations.
    if (conn.wasRecent(id)) return;
    throw new ProtocolError('ERR_PROTOCOL_UNKNOWN_TRANSFER', `no transfer ${id} on this connection`, 1008);
  }

  private open(conn: AgentConnection, id: number, peer: string, meta: Buffer): void {
    if (id >= DELIVERED_ID_BIT) throw new ProtocolError('ERR_PROTOCOL_BAD_ID', `sender transfer ids must be below ${DELIVERED_ID_BIT}`, 1008);
    if (conn.outgoing.has(id)) throw new ProtocolError('ERR_PROTOCOL_DUPLICATE_TRANSFER', `transfer ${id} is already open`, 1008);
    const refuse = (code: AbortCode, why: string): void => {
      conn.retire(id);
      this.opts.metrics.transfersAborted.inc({ reason: code });
      this.opts.log.info({ from: conn.id, to: peer, code }, 'transfer refused');
      conn.deliver(encodeAbort(id, code, why));
    };
    if (this.draining) return refuse('shutting-down', 'relay is shutting down');
    if (conn.outgoing.size >= this.opts.limits.maxOpenTransfers)
      return refuse('too-many-transfers', `at most ${this.opts.limits.maxOpenTransfers} open transfers per connection`);
    const dst = this.opts.router.resolve(peer);
    if (!(dst instanceof AgentConnection) && this.remote) return this.openRemote(conn, this.remote, id, peer, meta);
    if (!(dst instanceof AgentConnection) || dst.closing) return refuse('no-route', `${peer} is not connected`);
    if (dst.incoming.size >= this.opts.limits.maxOpenTransfers) return refuse('too-many-transfers', `${peer} has too many open transfers`);
    const t: Transfer = { key: randomBytes(16).toString('hex'), src: conn, srcId: id, dst, dstId: dst.allocateId(), credit: 0, bytes: 0, ending: false };
    conn.outgoing.set(id, t);
    dst.incoming.set(t.dstId, t);
    this.transfers.add(t);
    this.opts.metrics.transfersActive.set(this.transfers.size);
    this.opts.log.debug({ transfer: t.key, from: conn.id, to: peer }, 'transfer opened');
    dst.deliver(encodeOpen(t.dstId, conn.id, meta, this.opts.limits));
  }

  private forget(t: Transfer): boolean {
    if (!this.transfers.delete(t)) return false;
    if (t.src instanceof AgentConnection) {
      t.src.outgoing.delete(t.srcId);
      t.src.retire(t.srcId);
    }
    if (t.dst instanceof AgentConnection) {
      t.dst.incoming.delete(t.dstId);
      t.dst.retire(t.dstId);
    }
    if (t.leg !== undefined) this.legs.delete(t.leg);
    this.opts.metrics.transfersActive.set(this.transfers.size);
    return true;
  }

  private allocateLeg(): number {
    for (;;) {
      const leg = this.nextLeg;
      this.nextLeg = leg >= 0xffff_ffff ? 1 : leg + 1;
      if (!this.legs.has(leg)) return leg;
    }
  }

  /** OPEN to an agent not connected here: ask the cluster; the sender waits for credit meanwhile. */
  private openRemote(conn: AgentConnection, remote: RemoteDelivery, id: number, peer: string, meta: Buffer): void {
    const end = new RemoteEnd(peer, remote);
    const t: Transfer = {
      key: randomBytes(16).toString('hex'),
      src: conn,
      srcId: id,
      dst: end,
      dstId: 1,
      credit: 0,
      bytes: 0,
      ending: false,
      leg: this.allocateLeg(),
    };
    conn.outgoing.set(id, t);
    this.legs.set(t.leg as number, t);
    this.transfers.add(t);
    this.opts.metrics.transfersActive.set(this.transfers.size);
    const refused = (code: AbortCode, why: string): void => {
      if (!this.forget(t)) return;
      this.opts.metrics.transfersAborted.inc({ reason: code });
      this.opts.log.info({ from: conn.id, to: peer, code }, 'transfer refused');
      if (!conn.closing) conn.deliver(encodeAbort(id, code, why));
    };
    remote.open(peer, conn.id, t.leg as number, meta).then(
      (r) => {
        if ('refused' in r) return refused(r.refused, r.reason);
        t.dstId = r.leg;
        // END or ABORT the sender issued while the open was in flight go out now.
        end.bind(r.node, r.leg);
        this.opts.log.debug({ transfer: t.key, from: conn.id, to: peer, node: r.node }, 'transfer opened via another node');
      },
      () => refused('internal', 'cluster open failed'),
    );
  }

  /** MESSAGE to an agent not connected here: route it through the cluster. */
  private messageRemote(conn: AgentConnection, remote: RemoteDelivery, id: number, peer: string, body: Buffer): void {
    const frame = encodeMessage(id, conn.id, body, this.opts.limits);
    conn.remoteRequests += 1;
    if (conn.remoteRequests >= MAX_REMOTE_REQUESTS && !conn.remoteBlocked) {
      conn.remoteBlocked = true;
      conn.ws.pause();
    }
    const settle = (code: AbortCode | undefined): void => {
      conn.remoteRequests -= 1;
      if (conn.remoteBlocked && conn.remoteRequests <= MAX_REMOTE_REQUESTS / 2) {
        conn.remoteBlocked = false;
        if (conn.blockedOn.size === 0 && !conn.closing) conn.ws.resume();
      }
      this.opts.metrics.messages.inc({ outcome: code ?? 'routed' });
      if (code && !conn.closing) conn.deliver(encodeNotice('undeliverable', { id, to: peer, code }, this.opts.limits));
    };
    remote.message(peer, frame).then(settle, () => settle('internal'));
  }

  /** Another node opens a transfer to an agent connected here. */
  private remoteOpen(fromNode: string, leg: number, from: string, to: string, meta: Buffer): RemoteOpen {
    const remote = this.remote as RemoteDelivery;
    if (this.draining) return { refused: 'shutting-down', reason: 'relay node is shutting down' };
    const dst = this.opts.router.resolve(to);
    if (!(dst instanceof AgentConnection) || dst.closing) return { refused: 'no-route', reason: `${to} is not connected` };
    if (dst.incoming.size >= this.opts.limits.maxOpenTransfers) return { refused: 'too-many-transfers', reason: `${to} has too many open transfers` };
    const t: Transfer = {
      key: randomBytes(16).toString('hex'),
      src: new RemoteEnd(from, remote, fromNode, leg),
      srcId: leg,
      dst,
      dstId: dst.allocateId(),
      credit: 0,
      bytes: 0,
      ending: false,
      leg: this.allocateLeg(),
      held: 0,
      forwarded: 0,
    };
    dst.incoming.set(t.dstId, t);
    this.legs.set(t.leg as number, t);
    this.transfers.add(t);
    this.opts.metrics.transfersActive.set(this.transfers.size);
    this.opts.log.debug({ transfer: t.key, from, to, node: fromNode }, 'transfer opened from another node');
    dst.deliver(encodeOpen(t.dstId, from, meta, this.opts.limits));
    return { node: remote.nodeId, leg: t.leg as number };
  }

  /** Another node routes a message to an agent connected here. */
  private remoteMessage(to: string, frame: Buffer): AbortCode | undefined {
    const dst = this.opts.router.resolve(to);
    if (!(dst instanceof AgentConnection) || dst.closing) return 'no-route';
    dst.deliver(frame);
    return undefined;
  }

  /** Forwards credit to the source node, keeping at most the cluster window outstanding there. */
  private releaseCredit(t: Transfer): void {
    const window = (this.remote as RemoteDelivery).window;
    const held = t.held ?? 0;
    const give = Math.min(held, window - (t.forwarded ?? 0));
    if (give <= 0) {
      if (held > 0) this.opts.metrics.natsCreditHeld.inc();
      return;
    }
    t.held = held - give;
    t.forwarded = (t.forwarded ?? 0) + give;
    t.src.deliver(encodeCredit(t.srcId, give));
  }

  /** A transfer frame from another node; its id is one of our legs. */
  private remoteFrame(buf: Buffer): void {
    let frame;
    try {
      frame = decodeFrame(buf, this.opts.limits);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      this.opts.metrics.framesRejected.inc({ code: err.code });
      return;
    }
    const t = this.legs.get(frame.id);
    // Frames may cross an abort between nodes.
    if (!t) return;
    const fromSrc = t.src instanceof RemoteEnd;
    const end = (fromSrc ? t.src : t.dst) as RemoteEnd;
    end.heard = Date.now();
    switch (frame.kind) {
      case 'data': {
        if (!fromSrc || t.ending) return;
        const n = frame.payload.length;
        if (n > t.credit) return this.abort(t, 'protocol-error', 'relay node sent data beyond credit');
        t.credit -= n;
        t.bytes += n;
        t.forwarded = (t.forwarded ?? 0) - n;
        const dst = t.dst as AgentConnection;
        setFrameId(buf, t.dstId);
        dst.deliver(buf, (err) => {
          if (!err) this.opts.metrics.bytesOut.inc(n);
        });
        this.releaseCredit(t);
        return;
      }
      case 'end': {
        if (!fromSrc || t.ending) return;
        t.ending = true;
        t.dst.deliver(encodeEnd(t.dstId), (err) => (err ? this.abort(t, 'peer-gone', 'recipient went away before end') : this.complete(t)));
        return;
      }
      case 'credit': {
        if (fromSrc) return;
        t.credit += frame.bytes;
        t.src.deliver(encodeCredit(t.srcId, frame.bytes));
        return;
      }
      case 'abort':
        return this.abort(t, frame.code, frame.reason.slice(0, 100), end);
      case 'notice': {
        if (fromSrc || frame.type !== 'usage' || !this.forget(t)) return;
        this.opts.metrics.transfersCompleted.inc();
        this.opts.log.info({ transfer: t.key, from: t.src.id, to: t.dst.id, bytes: t.bytes }, 'transfer completed on another node');
        if (!t.src.closing) t.src.deliver(encodeNotice('usage', { ...frame.body, id: t.srcId }, this.opts.limits));
        return;
      }
      default:
        return;
    }
  }

  /** Probes nodes we have legs with and heard nothing from lately; aborts their transfers when they are gone. */
  private checkNodes(remote: RemoteDelivery, silentMs: number): void {
    const now = Date.now();
    const nodes = new Set<string>();
    for (const t of this.legs.values()) {
      const end = (t.src instanceof RemoteEnd ? t.src : t.dst) as RemoteEnd;
      if (end.node !== undefined && now - end.heard > silentMs && !this.probing.has(end.node)) nodes.add(end.node);
    }
    for (const node of nodes) {
      this.probing.add(node);
      void remote.probe(node).then((alive) => {
        this.probing.delete(node);
        const at = Date.now();
        for (const t of [...this.legs.values()]) {
          const end = (t.src instanceof RemoteEnd ? t.src : t.dst) as RemoteEnd;
          if (end.node !== node) continue;
          if (alive) {
            end.heard = at;
            continue;
          }
          end.closing = true;
          this.abort(t, 'peer-gone', 'relay node of the peer is gone');
        }
        if (!alive) this.opts.log.warn({ node }, 'relay node does not answer; its transfers were aborted');
      });
    }
  }

  private complete(t: Transfer): void {
    if (!this.forget(t)) return;
    this.opts.metrics.transfersCompleted.inc();
    const usage = this.opts.meter({ transferId: t.key, from: t.src.id, to: t.dst.id, bytes: t.bytes, completedAt: new Date() });
    this.opts.metrics.usageStatements.inc();
    this.opts.log.info({ transfer: t.key, from: t.src.id, to: t.dst.id, bytes: t.bytes, fee: usage.statement.fee }, 'transfer completed');
    if (!t.src.closing) t.src.deliver(encodeNotice('usage', { id: t.srcId, ...usage }, this.opts.limits));
    if (!t.dst.closing) t.dst.deliver(encodeNotice('usage', { id: t.dstId, ...usage }, this.opts.limits));
  }

  /** Aborts a transfer and tells both ends (except `by`, who asked for it). */
  private abort(t: Transfer, code: AbortCode, reason: string, by?: AgentConnection | RemoteEnd): void {
    if (!this.forget(t)) return;
    this.opts.metrics.transfersAborted.inc({ reason: code });
    this.opts.log.info({ transfer: t.key, from: t.src.id, to: t.dst.id, bytes: t.bytes, code }, 'transfer aborted');
    if (by !== t.src && !t.src.closing) t.src.deliver(encodeAbort(t.srcId, code, reason));
    if (by !== t.dst && !t.dst.closing) t.dst.deliver(encodeAbort(t.dstId, code, reason));
  }

  /** Pauses reading `src` while `dst` has more than the high-water mark queued. */
  private throttle(src: AgentConnection, dst: AgentConnection | RemoteEnd): void {
    if (dst instanceof RemoteEnd) return;
    if (dst.pendingBytes() <= this.opts.limits.highWaterMark || src === dst || src.blockedOn.has(dst)) return;
    if (src.blockedOn.size === 0) src.ws.pause();
    src.blockedOn.add(dst);
    dst.waiters.add(src);
    this.opts.metrics.backpressurePauses.inc();
  }

  private onDrained(dst: AgentConnection): void {
    if (dst.waiters.size === 0 || dst.pendingBytes() > this.opts.limits.highWaterMark / 2) return;
    for (const src of dst.waiters) this.unblock(src, dst);
    dst.waiters.clear();
  }

  private unblock(src: AgentConnection, dst: AgentConnection): void {
    src.blockedOn.delete(dst);
    if (src.blockedOn.size === 0 && !src.remoteBlocked && !src.closing) src.ws.resume();
  }

  private checkDeadlines(): void {
    const now = Date.now();
    if (this.remote && this.legs.size > 0) this.checkNodes(this.remote, this.remote.nodeCheckMs);
    for (const conn of this.connections) {
      if (conn.closing || conn.pendingBytes() === 0 || now - conn.lastProgress < this.opts.limits.writeTimeoutMs) continue;
      this.opts.metrics.writeTimeouts.inc();
      this.opts.log.warn({ agent: conn.id, pending: conn.pendingBytes() }, 'write deadline missed; aborting its transfers');
      this.close(conn, CLOSE_CODES.writeTimeout, 'write-timeout', 'write-timeout');
    }
  }

  /** Aborts the connection's transfers with `reason` (told to both ends) and closes it. */
  close(conn: AgentConnection, closeCode: number, closeReason: string, reason: AbortCode): void {
    if (conn.closing) return;
    for (const t of [...conn.outgoing.values(), ...conn.incoming.values()]) this.abort(t, reason, closeReason);
    conn.closing = true;
    this.release(conn);
    this.opts.router.detach(conn);
    conn.ws.close(closeCode, closeReason.slice(0, 120));
    setTimeout(() => conn.ws.terminate(), CLOSE_GRACE_MS).unref();
  }

  private release(conn: AgentConnection): void {
    for (const src of conn.waiters) this.unblock(src, conn);
    conn.waiters.clear();
    for (const dst of conn.blockedOn) dst.waiters.delete(conn);
    conn.blockedOn.clear();
  }

  private onClose(conn: AgentConnection, code: number): void {
    if (!this.connections.delete(conn)) return;
    this.opts.metrics.connections.dec();
    for (const t of [...conn.outgoing.values(), ...conn.incoming.values()]) this.abort(t, 'peer-gone', `${conn.id} disconnected`, conn);
    conn.closing = true;
    this.release(conn);
    this.opts.router.detach(conn);
    this.opts.log.info({ agent: conn.id, code }, 'agent disconnected');
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
