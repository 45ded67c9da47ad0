import { EventEmitter } from 'node:events';
import type { ConnectionOptions } from 'node:tls';
import { WebSocket } from 'ws';
import type { Transport, TransportEvents, TransportFactory } from './transport.ts';

/** Milliseconds to wait for the TLS and WebSocket handshakes. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;

// Masking protects browsers' intermediaries from cache poisoning; this client is not a browser and every byte
// travels inside TLS, so an all-zero mask (which ws then skips) saves a copy and an XOR pass on both ends.
const zeroMask = (mask: Uint8Array): void => {
  mask.fill(0);
};

class WsTransport extends EventEmitter<TransportEvents> implements Transport {
  private readonly ws: WebSocket;
  private closed = false;

  constructor(url: string, tls: ConnectionOptions, maxFrame: number) {
    super();
    this.ws = new WebSocket(url, {
      ...tls,
      perMessageDeflate: false,
      maxPayload: maxFrame,
      skipUTF8Validation: true,
      generateMask: zeroMask,
      handshakeTimeout: DEFAULT_HANDSHAKE_TIMEOUT_MS,
    } as ConstructorParameters<typeof WebSocket>[2]);
    this.ws.binaryType = 'nodebuffer';
    this.ws.on('open', () => this.emit('open'));
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

  private finish(code: number, reason: string): void {
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
export const wsTransport: TransportFactory = (url, tls, maxFrame) => new WsTransport(url, tls, maxFrame);
