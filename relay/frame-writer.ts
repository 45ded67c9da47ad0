// One job: writes the relay's WebSocket frames to an agent's TLS socket in pieces that Node's TLS layer never holds on to.
import type { Duplex } from 'node:stream';
import { WebSocket } from 'ws';

/** Sends one binary message; `done` is called once it reached the socket (with an error if it never will). */
export type SendFrame = (payload: Buffer, done: (err?: Error) => void) => void;

/**
 * Node's TLS socket encrypts each write into a buffer sized for that write and keeps that buffer for the life of
 * the connection; a stream also joins writes queued behind a slow socket into one (`writev`), which TLS copies into
 * one block before encrypting it. A relay that wrote each 1 MiB frame whole was left holding 1-3 MiB per agent that
 * had ever received a burst, which grew with traffic to gigabytes at 2,000 agents (docs/performance.md, "Relay
 * memory at scale"). So here each frame is one unmasked WebSocket binary frame (RFC 6455 section 5.2, server to
 * client), written as pieces of at most `piece` bytes, each its own TLS write: the header and the first bytes of the
 * payload in one small copy, the rest as views of the payload (no copy), and queued pieces are never joined.
 *
 * All of a frame's pieces are queued on the socket in one synchronous call, so nothing ws writes itself (pings,
 * pongs, the close frame) can fall between them.
 */
export function frameWriter(ws: WebSocket, socket: Duplex, piece: number): SendFrame {
  // Queued writes go to the socket one at a time instead of being joined into one writev (see above).
  (socket as { _writev?: unknown })._writev = null;
  return (payload, done) => {
    if (ws.readyState !== WebSocket.OPEN) {
      process.nextTick(done, new Error(`WebSocket is not open: readyState ${ws.readyState}`));
      return;
    }
    const len = payload.length;
    const headerLength = len < 126 ? 2 : len < 0x1_0000 ? 4 : 10;
    const first = Math.min(len, Math.max(0, piece - headerLength));
    const head = Buffer.allocUnsafe(headerLength + first);
    head[0] = 0x82; // FIN, binary
    if (headerLength === 2) head[1] = len;
    else if (headerLength === 4) {
      head[1] = 126;
      head.writeUInt16BE(len, 2);
    } else {
      head[1] = 127;
      head.writeBigUInt64BE(BigInt(len), 2);
    }
    payload.copy(head, headerLength, 0, first);
    if (first === len) {
      socket.write(head, (err) => done(err ?? undefined));
      return;
    }
    socket.write(head);
    for (let at = first; at < len; at += piece) {
      const end = Math.min(at + piece, len);
      if (end === len) socket.write(payload.subarray(at, end), (err) => done(err ?? undefined));
      else socket.write(payload.subarray(at, end));
    }
  };
}
