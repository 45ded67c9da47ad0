// One job: the agent listener (HTTPS with client certificates) and the gate that checks a peer before the WebSocket upgrade.
import { constants as cryptoConstants, X509Certificate } from 'node:crypto';
import { STATUS_CODES, type IncomingMessage } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  CERTIFICATE_REFUSALS,
  peerHospitalId,
  presentedCertificate,
  refusalStatus,
  serverTlsOptions,
  tlsRefusal,
  type CertificateRefusal,
  type CrlWatcher,
  type Identity,
} from '../certs/index.ts';
import { parseRevision, REVISION_HEADER } from './protocol/constants.ts';
import { limitConnectionsPerAddress } from './address-limit.ts';
import type { Hub } from './hub.ts';
import type { PatientChannels, PatientGate } from './patients/index.ts';
import { PATIENT_HUB_PATH } from './protocol/patient-credential.ts';
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
  /** Patient connections and the patient app (relay/patients/); absent: none. */
  patients?: { gate: PatientGate; channels: PatientChannels } | undefined;
}

/** Response header naming why a client certificate was refused (one of the `CertificateRefusal` reasons). */
export const REFUSAL_HEADER = 'x-hie-refusal';

function refuse(socket: Socket, status: number, why: string, reason?: string): void {
  const body = `${why}\n`;
  const extra = reason ? `${REFUSAL_HEADER}: ${reason}\r\n` : '';
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nConnection: close\r\n${extra}Content-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
  setTimeout(() => socket.destroy(), 1000).unref();
}

/** Creates the (not yet listening) agent server; upgrades that pass the gate are handed to the hub. */
export function createAgentServer(o: AgentServerOptions): HttpsServer {
  const server: HttpsServer = createHttpsServer({
    ...serverTlsOptions(o.identity),
    // The handshake completes for any client certificate, so that the gate below can answer a refused one with
    // 401/403 and its reason instead of a reset the agent cannot tell from a network fault; nothing is served before it.
    rejectUnauthorized: false,
    crl: o.watcher?.current.pem,
    // Node's default holds a handshake that never completes for 120 s.
    handshakeTimeout: o.limits.handshakeTimeoutMs,
    // No TLS session tickets: agents hold one long-lived connection, and OpenSSL's per-connection ticket state
    // cost about 10 KiB of native memory per idle mTLS connection (docs/performance.md, "Relay memory at scale").
    // A reconnecting agent does a full handshake instead of resuming.
    secureOptions: cryptoConstants.SSL_OP_NO_TICKET,
  });
  // Every reason is exported from the start (at 0), so an alert on a rate sees the first refusal.
  for (const reason of [...CERTIFICATE_REFUSALS, 'tls-error']) o.metrics.tlsRefused.inc({ reason }, 0);
  // Counted at accept, before the TLS handshake: one address cannot hold the listener with half-open handshakes.
  limitConnectionsPerAddress(server, o.limits.maxConnectionsPerAddress, (address) => {
    o.metrics.connectionsRefused.inc({ reason: 'per-address' });
    o.log.debug({ address, max: o.limits.maxConnectionsPerAddress }, 'connection refused: too many from one address');
  });
  server.on('tlsClientError', (err: Error & { code?: string }, socket: unknown) => {
    if (err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT') {
      o.metrics.handshakeTimeouts.inc();
      o.log.info({ code: err.code, timeoutMs: o.limits.handshakeTimeoutMs }, 'TLS handshake timed out');
      return;
    }
    o.metrics.connectionsRefused.inc({ reason: 'tls' });
    o.metrics.tlsRefused.inc({ reason: 'tls-error' });
    o.log.warn({ reason: 'tls-error', code: err.code, peer: (socket as Socket | undefined)?.remoteAddress }, 'TLS handshake refused');
  });
  server.on('request', async (req, res) => {
    if (o.patients && (await o.patients.gate.serve(req, res))) return;
    res.writeHead(426, { 'content-type': 'text/plain', connection: 'close' }).end(`upgrade to WebSocket on ${AGENT_PATH}\n`);
  });
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: o.limits.maxFrame, clientTracking: false, skipUTF8Validation: true });
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    if (o.patients?.gate.handlesUpgrade(req)) return void o.patients.gate.upgrade(req, socket, head).catch(() => socket.destroy());
    const peer = admit(o, req, socket);
    if (!peer) return;
    wss.handleUpgrade(req, socket, head, (ws) => {
      if (!o.accepting()) return ws.close(1001, 'relay shutting down');
      if (peer.path === PATIENT_HUB_PATH && o.patients) {
        return o.patients.channels.acceptHub(ws, peer.id, new X509Certificate((socket as TLSSocket).getPeerCertificate().raw));
      }
      o.hub.accept(ws, socket, peer);
      o.accepted(ws);
    });
  });
  return server;
}

/** The gate: the verified peer, or undefined once the upgrade was refused with a status. */
function admit(o: AgentServerOptions, req: IncomingMessage, socket: Socket): { id: string; serial: string; revision: number; path: string } | undefined {
  const tlsSocket = socket as TLSSocket;
  const deny = (status: number, reason: string, why: string): undefined => {
    o.metrics.connectionsRefused.inc({ reason });
    o.log.info({ status, reason }, 'upgrade refused');
    refuse(socket, status, why);
    return undefined;
  };
  if (!o.accepting()) return deny(503, 'shutting-down', 'relay is shutting down');
  const path = (req.url ?? '').split('?')[0] ?? '';
  if (path !== AGENT_PATH && !(path === PATIENT_HUB_PATH && o.patients)) return deny(404, 'path', `agents connect to ${AGENT_PATH}`);
  const refuseCertificate = (reason: CertificateRefusal, detail: string): undefined => {
    const status = refusalStatus(reason);
    const presented = presentedCertificate(tlsSocket);
    o.metrics.connectionsRefused.inc({ reason: 'certificate' });
    o.metrics.tlsRefused.inc({ reason });
    // The id is what the certificate claims; it was not verified (that is the point of the line).
    o.log.warn({ status, reason, peer: socket.remoteAddress, ...presented, detail }, `client certificate refused: ${reason}`);
    refuse(socket, status, `client certificate refused: ${reason}${presented.serial ? ` (serial ${presented.serial})` : ''}: ${detail}`, reason);
    return undefined;
  };
  if (!tlsSocket.authorized) {
    const reason = tlsRefusal(tlsSocket);
    return refuseCertificate(reason, String(tlsSocket.authorizationError ?? 'no certificate presented'));
  }
  let peer: { id: string; serial: string; notAfter: Date };
  try {
    // Identity comes only from the verified certificate.
    peer = peerHospitalId(tlsSocket);
  } catch (err) {
    return refuseCertificate('not-agent', (err as Error).message);
  }
  if (o.watcher?.isRevoked(peer.serial)) return refuseCertificate('revoked', 'on the CRL in force');
  if (peer.notAfter.getTime() <= Date.now()) return refuseCertificate('expired', `expired ${peer.notAfter.toISOString()}`);
  if (o.hub.connections.size >= o.limits.maxConnections) return deny(503, 'capacity', 'too many connections');
  return { id: peer.id, serial: peer.serial, revision: parseRevision(req.headers[REVISION_HEADER]), path };
}
