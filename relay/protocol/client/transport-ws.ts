import { EventEmitter } from 'node:events';
import type { ConnectionOptions } from 'node:tls';
import { WebSocket } from 'ws';
import type { Transport, TransportEvents, TransportFactory } from './transport.ts';

/** Milliseconds to wait for the TLS and WebSocket handshakes. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
/** The client pings the relay this often and drops a connection whose previous ping went unanswered (0 disables). */
export const DEFAULT_CLIENT_PING_INTERVAL_MS = 20_000;

// Masking protects browsers' intermediaries from cache poisoning; this client is not a browser and every byte
// travels inside TLS, so an all-zero mask (which ws then skips) saves a copy and an XOR pass on both ends.
const zeroMask = (mask: Uint8Array): void => {
  mask.fill(0);
};

class WsTransport extends EventEmitter<TransportEvents> implements Transport {
  private readonly ws: WebSocket;
  private closed = false;
  private heartbeat: NodeJS.Timeout | undefined;

  constructor(url: string, tls: ConnectionOptions, maxFrame: number, pingIntervalMs = DEFAULT_CLIENT_PING_INTERVAL_MS, headers?: Record<string, string>) {
    super();
    this.ws = new WebSocket(url, {
      ...tls,
      perMessageDeflate: false,
      maxPayload: maxFrame,
      skipUTF8Validation: true,
      generateMask: zeroMask,
      handshakeTimeout: DEFAULT_HANDSHAKE_TIMEOUT_MS,
      ...(headers ? { headers } : {}),
    } as ConstructorParameters<typeof WebSocket>[2]);
    this.ws.binaryType = 'nodebuffer';
    this.ws.on('open', () => {
      if (pingIntervalMs > 0) this.startHeartbeat(pingIntervalMs);
      this.emit('open');
    });
    this.ws.on('message', (data: Buffer) => this.emit('frame', data));
    this.ws.on('unexpected-response', (req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        if (body.length < 512) body += d;
      });
      res.on('end', () => {
        this.emit('refused', res.statusCode ?? 0, body.trim());
        req.destroy();
        this.finish(1006, `HTTP ${res.statusCode ?? 0}`);
      });
    });
    this.ws.on('error', (err) => this.emit('error', err));
    this.ws.on('close', (code, reason) => this.finish(code, reason.toString('utf8')));
  }

  // A relay that stops answering (dead link, half-open TCP) would otherwise hold this agent's transfers forever.
  private startHeartbeat(intervalMs: number): void {
    let answered = true;
    this.ws.on('pong', () => {
      answered = true;
    });
    this.heartbeat = setInterval(() => {
      if (!answered) {
        this.ws.terminate();
        this.finish(1006, 'heartbeat timeout');
        return;
      }
      answered = false;
      this.ws.ping();
    }, intervalMs);
    this.heartbeat.unref();
  }

  private finish(code: number, reason: string): void {
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (this.closed) return;
    this.closed = true;
    this.emit('close', code, reason);
  }

  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  send(frame: Buffer, cb?: (err?: Error) => void): void {
    if (this.ws.readyState !== WebSocket.OPEN) {
      cb?.(new Error('transport is not open'));
      return;
    }
    this.ws.send(frame, { binary: true }, (err) => cb?.(err ?? undefined));
  }

  close(code = 1000, reason = ''): void {
    if (this.ws.readyState === WebSocket.CONNECTING) this.ws.terminate();
    else this.ws.close(code, reason);
  }

  terminate(): void {
    this.ws.terminate();
  }
}

/** The WebSocket transport (the only module of the client that imports `ws`). */
export const wsTransport: TransportFactory = (url, tls, maxFrame, options) => new WsTransport(url, tls, maxFrame, options?.pingIntervalMs, options?.headers);
