// One job: bound the TCP connections one remote address holds open on a listener, before TLS sees them.
import type { Server, Socket } from 'node:net';

/** The key a remote address is counted under (an IPv4-mapped IPv6 address counts as its IPv4 address). */
export function addressKey(remoteAddress: string | undefined): string | undefined {
  if (!remoteAddress) return undefined;
  return remoteAddress.startsWith('::ffff:') && remoteAddress.includes('.') ? remoteAddress.slice(7) : remoteAddress;
}

/** Concurrent connections per remote address, each counted from accept until its socket closes. */
export class AddressCounter {
  readonly #held = new Map<string, number>();

  constructor(readonly max: number) {
    if (!Number.isInteger(max) || max < 1) throw new TypeError('max must be a positive integer');
  }

  /** Takes a slot for `key`; false (and nothing taken) when it already holds `max`. */
  acquire(key: string): boolean {
    const held = this.#held.get(key) ?? 0;
    if (held >= this.max) return false;
    this.#held.set(key, held + 1);
    return true;
  }

  /** Gives back a slot {@link acquire} took. */
  release(key: string): void {
    const held = this.#held.get(key) ?? 0;
    if (held <= 1) this.#held.delete(key);
    else this.#held.set(key, held - 1);
  }

  /** Connections `key` holds now. */
  held(key: string): number {
    return this.#held.get(key) ?? 0;
  }

  /** Addresses holding at least one connection (memory is bounded by live sockets, not by history). */
  get addresses(): number {
    return this.#held.size;
  }
}

/**
 * Puts a per-address gate in front of every 'connection' listener of `server`
 * (for a TLS server: in front of the TLS handshake, so half-open handshakes
 * count too). A connection from an address already holding `max` is destroyed
 * at once, before any listener sees it, and reported to `refused`. Call it
 * once, after the server is created and before it listens.
 */
export function limitConnectionsPerAddress(server: Server, max: number, refused: (address: string) => void): AddressCounter {
  const counter = new AddressCounter(max);
  const inner = server.rawListeners('connection') as Array<(socket: Socket) => void>;
  server.removeAllListeners('connection');
  server.on('connection', (socket: Socket) => {
    const key = addressKey(socket.remoteAddress);
    // No address: the peer already went away between accept and now; nothing to count or refuse.
    if (key === undefined) return void socket.destroy();
    if (!counter.acquire(key)) {
      socket.destroy();
      refused(key);
      return;
    }
    // The raw socket closes when the TLS socket on top of it does, whichever side ends it.
    socket.once('close', () => counter.release(key));
    for (const listener of inner) listener.call(server, socket);
  });
  return counter;
}
