import type { EventEmitter } from 'node:events';
import type { ConnectionOptions } from 'node:tls';

/** Events a transport emits. */
export interface TransportEvents {
  open: [];
  frame: [frame: Buffer];
  /** The relay answered the upgrade with an HTTP status instead of switching protocols. */
  refused: [status: number, body: string];
  error: [error: Error];
  close: [code: number, reason: string];
}

/** One connection to the relay carrying binary frames; the client never touches sockets itself. */
export interface Transport extends EventEmitter<TransportEvents> {
  /** Sends one frame; `cb` runs once it was written or failed. */
  send(frame: Buffer, cb?: (err?: Error) => void): void;
  /** Bytes accepted by `send` and not yet written to the socket. */
  readonly bufferedAmount: number;
  close(code?: number, reason?: string): void;
  /** Drops the connection without a closing handshake. */
  terminate(): void;
}

/** Opens a transport to `url` with the given TLS options and largest accepted frame. */
export type TransportFactory = (
  url: string,
  tls: ConnectionOptions,
  maxFrame: number,
  /** `headers` go on the upgrade request (the client's protocol revision); a transport without headers may ignore them. */
  options?: { pingIntervalMs?: number; headers?: Record<string, string> },
) => Transport;
