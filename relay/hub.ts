import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { WebSocket } from 'ws';
import { decodeFrame, encodeAbort, encodeCredit, encodeEnd, encodeMessage, encodeNotice, encodeOpen, setFrameId } from './protocol/codec.ts';
import { CLOSE_CODES, DELIVERED_ID_BIT, MAX_CREDIT, type AbortCode, type FrameLimits } from './protocol/constants.ts';
import { ProtocolError } from './protocol/errors.ts';
import type { SignedUsageStatement } from './protocol/usage.ts';
import { AgentConnection, type Transfer } from './connection.ts';
import type { RelayMetrics } from './metrics.ts';
import type { Router } from './router.ts';

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

/** The relay core: connections, the transfer table, flow control and metering. */
export class Hub {
  readonly connections = new Set<AgentConnection>();
  private readonly transfers = new Set<Transfer>();
  private draining = false;
  private readonly watchdog: NodeJS.Timeout;

  constructor(private readonly opts: HubOptions) {
    const every = Math.max(50, Math.min(1000, Math.floor(opts.limits.writeTimeoutMs / 4)));
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
    conn.deliver(encodeNotice('ready', { agent: peer.id, limits: this.wireLimits() }, this.opts.limits));
    if (this.draining) conn.deliver(encodeNotice('shutting-down', { deadlineMs: 0 }, this.opts.limits));
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
        t.dst.deliver(encodeEnd(t.dstId), (err) => (err ? this.abort(t, 'peer-gone', 'recipient went away before end') : this.complete(t)));
        return;
      }
      case 'credit': {
        const t = conn.incoming.get(frame.id);
        if (!t) return this.unknown(conn, frame.id);
        if (t.credit + frame.bytes > MAX_CREDIT) throw new ProtocolError('ERR_PROTOCOL_CREDIT_EXCEEDED', `outstanding credit would exceed ${MAX_CREDIT}`, 1008);
        t.credit += frame.bytes;
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
    if (conn.outgoing.size >= this.opts.limits.maxOpenTransfers) return refuse('too-many-transfers', `at most ${this.opts.limits.maxOpenTransfers} open transfers per connection`);
    const dst = this.opts.router.resolve(peer);
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
    t.src.outgoing.delete(t.srcId);
    t.dst.incoming.delete(t.dstId);
    t.src.retire(t.srcId);
    t.dst.retire(t.dstId);
    this.opts.metrics.transfersActive.set(this.transfers.size);
    return true;
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
  private abort(t: Transfer, code: AbortCode, reason: string, by?: AgentConnection): void {
    if (!this.forget(t)) return;
    this.opts.metrics.transfersAborted.inc({ reason: code });
    this.opts.log.info({ transfer: t.key, from: t.src.id, to: t.dst.id, bytes: t.bytes, code }, 'transfer aborted');
    if (by !== t.src && !t.src.closing) t.src.deliver(encodeAbort(t.srcId, code, reason));
    if (by !== t.dst && !t.dst.closing) t.dst.deliver(encodeAbort(t.dstId, code, reason));
  }

  /** Pauses reading `src` while `dst` has more than the high-water mark queued. */
  private throttle(src: AgentConnection, dst: AgentConnection): void {
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
    if (src.blockedOn.size === 0 && !src.closing) src.ws.resume();
  }

  private checkDeadlines(): void {
    const now = Date.now();
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
