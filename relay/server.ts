import { once } from 'node:events';
import { createServer as createHttpServer, STATUS_CODES, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { createLogger } from '../common/index.ts';
import { WebSocketServer, type WebSocket } from 'ws';
import { CrlWatcher, loadIdentity, peerHospitalId, secureContextOptions, serverTlsOptions, type Identity } from '../certs/index.ts';
import { parseRelayConfig, type RelayConfig, type RelayConfigInput } from './config.ts';
import { Hub } from './hub.ts';
import { signUsage } from './metering.ts';
import { RelayMetrics } from './metrics.ts';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { connectNatsRouter, type NatsRouter } from './nats/index.ts';
import { LocalRouter, type Router } from './router.ts';

/** The path agents open their WebSocket on. */
export const AGENT_PATH = '/v1/agent';

/** A running relay. */
export interface RunningRelay {
  /** Agent (mTLS WebSocket) port. */
  port: number;
  /** Admin HTTP port, or undefined when the admin listener is disabled. */
  adminPort: number | undefined;
  metrics: RelayMetrics;
  /** This node's id on a cluster (NATS configured), else undefined. */
  nodeId: string | undefined;
  /** Bytes queued in the relay towards agents right now. */
  bufferedBytes(): number;
  /** Re-reads the CRL (what SIGHUP does); true when a new CRL took effect. */
  reloadCrl(): boolean;
  /** Graceful shutdown: refuse new work, notify agents, wait for transfers up to `graceMs`, close. */
  close(graceMs?: number): Promise<void>;
}

/** Extras for embedding: a logger or router other than the defaults. */
export interface StartOptions {
  logger?: Logger;
  router?: Router;
  env?: NodeJS.ProcessEnv;
}

function refuse(socket: Socket, status: number, why: string): void {
  const body = `${why}\n`;
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
  setTimeout(() => socket.destroy(), 1000).unref();
}

/** Starts a relay from a (raw or parsed) config; resolves once both listeners are bound. */
export async function startRelay(input: RelayConfigInput | RelayConfig, options: StartOptions = {}): Promise<RunningRelay> {
  const env = options.env ?? process.env;
  const config = parseRelayConfig(input, {});
  const log = options.logger ?? createLogger({ level: config.log.level, base: { svc: 'hie-relay' } });
  const passphrase = config.tls.passphraseEnv ? env[config.tls.passphraseEnv] : undefined;
  const identity: Identity = loadIdentity({ cert: config.tls.cert, key: config.tls.key, ca: config.tls.ca, crl: config.tls.crl, passphrase });
  const metrics = new RelayMetrics();
  const limits = { ...config.limits };
  let nats: NatsRouter | undefined;
  if (config.nats && !options.router) {
    const nodeId =
      config.node.id ??
      `${hostname()
        .replace(/[^A-Za-z0-9_-]/g, '-')
        .slice(0, 48)}-${randomBytes(4).toString('hex')}`;
    nats = await connectNatsRouter({ config: config.nats, nodeId, limits, metrics, log, env });
  }
  const router = options.router ?? nats ?? new LocalRouter();
  const watcher = config.tls.crl ? new CrlWatcher(config.tls.crl, identity.caPem, { intervalMs: config.tls.crlPollMs }) : undefined;
  const hub = new Hub({
    limits,
    router,
    metrics,
    log,
    meter: (t) => signUsage(t, config.tariff, identity.privateKey, identity.certPem),
  });
  let accepting = true;

  const server: HttpsServer = createHttpsServer({ ...serverTlsOptions(identity), crl: watcher?.current.pem });
  server.on('tlsClientError', (err: Error & { code?: string }) => {
    metrics.connectionsRefused.inc({ reason: 'tls' });
    log.info({ code: err.code }, 'TLS handshake refused');
  });
  server.on('request', (_req, res) => {
    res.writeHead(426, { 'content-type': 'text/plain', connection: 'close' }).end(`upgrade to WebSocket on ${AGENT_PATH}\n`);
  });
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: limits.maxFrame, clientTracking: false, skipUTF8Validation: true });

  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const tlsSocket = socket as TLSSocket;
    const deny = (status: number, reason: string, why: string): void => {
      metrics.connectionsRefused.inc({ reason });
      log.info({ status, reason }, 'upgrade refused');
      refuse(socket, status, why);
    };
    if (!accepting) return deny(503, 'shutting-down', 'relay is shutting down');
    if ((req.url ?? '').split('?')[0] !== AGENT_PATH) return deny(404, 'path', `agents connect to ${AGENT_PATH}`);
    let peer: { id: string; serial: string; notAfter: Date };
    try {
      // Identity comes only from the verified certificate, checked again here even though the handshake already required it.
      peer = peerHospitalId(tlsSocket);
    } catch (err) {
      return deny(tlsSocket.authorized ? 403 : 401, 'certificate', (err as Error).message);
    }
    if (watcher?.isRevoked(peer.serial)) return deny(403, 'revoked', 'certificate revoked');
    if (peer.notAfter.getTime() <= Date.now()) return deny(403, 'expired', 'certificate expired');
    if (hub.connections.size >= limits.maxConnections) return deny(503, 'capacity', 'too many connections');
    wss.handleUpgrade(req, socket, head, (ws) => {
      if (!accepting) return ws.close(1001, 'relay shutting down');
      hub.accept(ws, { id: peer.id, serial: peer.serial });
      answered.set(ws, true);
      ws.on('pong', () => answered.set(ws, true));
    });
  });

  // Heartbeat: an agent that did not answer the last ping (dead link, or a peer that stopped reading its
  // socket) is cut off, which aborts its transfers with a reason both ends see.
  const answered = new WeakMap<WebSocket, boolean>();
  const heartbeat =
    limits.pingIntervalMs > 0
      ? setInterval(() => {
          for (const conn of hub.connections) {
            if (answered.get(conn.ws) === false) {
              log.warn({ agent: conn.id }, 'agent missed a heartbeat; closing its connection');
              metrics.heartbeatTimeouts.inc();
              conn.ws.terminate();
              continue;
            }
            answered.set(conn.ws, false);
            conn.ws.ping();
          }
        }, limits.pingIntervalMs)
      : undefined;
  heartbeat?.unref();

  watcher?.on('change', (crl) => {
    server.setSecureContext(secureContextOptions(identity, crl.pem));
    const closed = hub.revoke((serial) => crl.revoked.has(serial));
    log.info({ crlNumber: crl.crlNumber, revoked: crl.revoked.size, closed }, 'CRL reloaded');
  });
  watcher?.on('rejected', (err) => log.error({ code: err.code, msg: err.message }, 'CRL reload rejected; previous CRL stays in force'));
  watcher?.start();

  server.listen(config.listen.port, config.listen.host);
  try {
    await once(server, 'listening');
  } catch (err) {
    watcher?.stop();
    hub.closeAll();
    await nats?.close();
    throw err;
  }
  const port = (server.address() as AddressInfo).port;

  const refresh = (): void => {
    metrics.bufferedBytes.set(hub.bufferedBytes());
    metrics.transfersActive.set(hub.activeTransfers);
    metrics.certExpiry.set(Math.round((Date.parse(identity.certificate.validTo) - Date.now()) / 1000));
    const next = watcher?.current.nextUpdate;
    if (next) metrics.crlNextUpdate.set(Math.round((next.getTime() - Date.now()) / 1000));
  };
  let admin: HttpServer | undefined;
  if (config.admin.enabled) {
    // Loaded only when enabled: express and helmet are the relay's largest dependencies.
    const { adminApp } = await import('./admin.ts');
    admin = createHttpServer(adminApp({ metrics, router, ready: () => accepting, refresh }));
    admin.listen(config.admin.port, config.admin.host);
    try {
      await once(admin, 'listening');
    } catch (err) {
      server.close();
      watcher?.stop();
      hub.closeAll();
      await nats?.close();
      throw err;
    }
  }
  const adminPort = admin ? (admin.address() as AddressInfo).port : undefined;
  log.info({ port, adminPort, host: config.listen.host, node: nats?.nodeId }, 'relay listening');

  let closing: Promise<void> | undefined;
  const close = (graceMs: number = limits.shutdownGraceMs): Promise<void> => {
    if (heartbeat) clearInterval(heartbeat);
    closing ??= (async () => {
      accepting = false;
      server.close();
      log.info({ active: hub.activeTransfers, graceMs }, 'shutting down');
      hub.startDraining(graceMs);
      const deadline = Date.now() + graceMs;
      while (hub.activeTransfers > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      hub.closeAll();
      watcher?.stop();
      const until = Date.now() + 3000;
      while (hub.connections.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      server.closeAllConnections();
      await nats?.close();
      if (admin) {
        admin.closeAllConnections();
        await new Promise<void>((r) => admin.close(() => r()));
      }
      log.info('relay stopped');
    })();
    return closing;
  };

  return {
    port,
    adminPort,
    metrics,
    nodeId: nats?.nodeId,
    bufferedBytes: () => hub.bufferedBytes(),
    reloadCrl: () => watcher?.reload() ?? false,
    close,
  };
}
