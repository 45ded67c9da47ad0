// One job: writes the relay's WebSocket frames to an agent's TLS socket in pieces, so that Node's TLS layer keeps a piece or two per agent, not a frame.
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
 * client), written as pieces of at most `piece` bytes: the header and the first bytes of the payload in one small
 * copy, the rest as views of the payload (no copy). Writes queued behind a busy socket are still joined, as Node
 * would, but only up to `piece` bytes per TLS write, so that many small frames still cost one TLS write, not one each.
 *
 * All of a frame's pieces are queued on the socket in one synchronous call, so nothing ws writes itself (pings,
 * pongs, the close frame) can fall between them.
 */
export function frameWriter(ws: WebSocket, socket: Duplex, piece: number): SendFrame {
  capJoinedWrites(socket, piece);
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

type Queued = { chunk: Buffer | string; encoding: BufferEncoding };
type Writev = (chunks: Queued[], cb: (err?: Error | null) => void) => void;

/**
 * Node's Writable hands the writes queued behind a busy socket to `_writev` in one call, which TLS encrypts as one
 * block. This splits such a call into runs of at most `piece` bytes (a longer write alone), written one after the
 * other, with the one callback Node expects once the last run is written or a run fails.
 */
function capJoinedWrites(socket: Duplex, piece: number): void {
  const s = socket as unknown as { _writev?: Writev };
  const writev = s._writev?.bind(socket);
  if (!writev) return;
  s._writev = (chunks, cb) => {
    let total = 0;
    for (const c of chunks) total += c.chunk.length;
    if (total <= piece) return writev(chunks, cb);
    const all = (chunks as Queued[] & { allBuffers?: boolean }).allBuffers;
    const runs: Array<Queued[] & { allBuffers?: boolean }> = [];
    let run: Queued[] & { allBuffers?: boolean } = [];
    let bytes = 0;
    for (const c of chunks) {
      if (run.length > 0 && bytes + c.chunk.length > piece) {
        runs.push(run);
        run = [];
        bytes = 0;
      }
      run.push(c);
      bytes += c.chunk.length;
    }
    runs.push(run);
    for (const r of runs) r.allBuffers = all;
    let next = 0;
    const step = (err?: Error | null): void => {
      if (err || next === runs.length) return cb(err);
      writev(runs[next++] as Queued[], step);
    };
    step();
  };
}
