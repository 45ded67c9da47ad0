// One job: the agent listener (HTTPS with client certificates) and the gate that checks a peer before the WebSocket upgrade.
import { STATUS_CODES, type IncomingMessage } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import { peerHospitalId, serverTlsOptions, type CrlWatcher, type Identity } from '../certs/index.ts';
import { parseRevision, REVISION_HEADER } from './protocol/constants.ts';
import { limitConnectionsPerAddress } from './address-limit.ts';
import type { Hub } from './hub.ts';
import type { RelayMetrics } from './metrics.ts';

/** The path agents open their WebSocket on. */
export const AGENT_PATH = '/v1/agent';

/** What the agent listener needs. */
export interface AgentServerOptions {
  identity: Identity;
  watcher: CrlWatcher | undefined;
  hub: Hub;
  metrics: RelayMetrics;
  log: Logger;
  limits: { maxFrame: number; maxConnections: number; handshakeTimeoutMs: number; maxConnectionsPerAddress: number };
  /** False once the relay shuts down: upgrades are refused with 503. */
  accepting(): boolean;
  /** Called with every accepted socket (the heartbeat watches it). */
  accepted(ws: WebSocket): void;
}

function refuse(socket: Socket, status: number, why: string): void {
  const body = `${why}\n`;
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
  setTimeout(() => socket.destroy(), 1000).unref();
}

/** Creates the (not yet listening) agent server; upgrades that pass the gate are handed to the hub. */
export function createAgentServer(o: AgentServerOptions): HttpsServer {
  const server: HttpsServer = createHttpsServer({
    ...serverTlsOptions(o.identity),
    crl: o.watcher?.current.pem,
    // Node's default holds a handshake that never completes for 120 s.
    handshakeTimeout: o.limits.handshakeTimeoutMs,
  });
  // Counted at accept, before the TLS handshake: one address cannot hold the listener with half-open handshakes.
  limitConnectionsPerAddress(server, o.limits.maxConnectionsPerAddress, (address) => {
    o.metrics.connectionsRefused.inc({ reason: 'per-address' });
    o.log.debug({ address, max: o.limits.maxConnectionsPerAddress }, 'connection refused: too many from one address');
  });
  server.on('tlsClientError', (err: Error & { code?: string }) => {
    if (err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT') {
      o.metrics.handshakeTimeouts.inc();
      o.log.info({ code: err.code, timeoutMs: o.limits.handshakeTimeoutMs }, 'TLS handshake timed out');
      return;
    }
    o.metrics.connectionsRefused.inc({ reason: 'tls' });
    o.log.info({ code: err.code }, 'TLS handshake refused');
  });
  server.on('request', (_req, res) => {
    res.writeHead(426, { 'content-type': 'text/plain', connection: 'close' }).end(`upgrade to WebSocket on ${AGENT_PATH}\n`);
  });
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: o.limits.maxFrame, clientTracking: false, skipUTF8Validation: true });
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const peer = admit(o, req, socket);
    if (!peer) return;
    wss.handleUpgrade(req, socket, head, (ws) => {
      if (!o.accepting()) return ws.close(1001, 'relay shutting down');
      o.hub.accept(ws, peer);
      o.accepted(ws);
    });
  });
  return server;
}

/** The gate: the verified peer, or undefined once the upgrade was refused with a status. */
function admit(o: AgentServerOptions, req: IncomingMessage, socket: Socket): { id: string; serial: string; revision: number } | undefined {
  const tlsSocket = socket as TLSSocket;
  const deny = (status: number, reason: string, why: string): undefined => {
    o.metrics.connectionsRefused.inc({ reason });
    o.log.info({ status, reason }, 'upgrade refused');
    refuse(socket, status, why);
    return undefined;
  };
  if (!o.accepting()) return deny(503, 'shutting-down', 'relay is shutting down');
  if ((req.url ?? '').split('?')[0] !== AGENT_PATH) return deny(404, 'path', `agents connect to ${AGENT_PATH}`);
  let peer: { id: string; serial: string; notAfter: Date };
  try {
    // Identity comes only from the verified certificate, checked again here even though the handshake already required it.
    peer = peerHospitalId(tlsSocket);
  } catch (err) {
    return deny(tlsSocket.authorized ? 403 : 401, 'certificate', (err as Error).message);
  }
  if (o.watcher?.isRevoked(peer.serial)) return deny(403, 'revoked', 'certificate revoked');
  if (peer.notAfter.getTime() <= Date.now()) return deny(403, 'expired', 'certificate expired');
  if (o.hub.connections.size >= o.limits.maxConnections) return deny(503, 'capacity', 'too many connections');
  return { id: peer.id, serial: peer.serial, revision: parseRevision(req.headers[REVISION_HEADER]) };
}
