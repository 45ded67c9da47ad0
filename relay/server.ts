// One job: start a relay node from its config (identity, router, hub, listeners) and stop it gracefully.
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { createLogger } from '../common/index.ts';
import { certificateHealth, CrlWatcher, IdentityWatcher, loadIdentity, secureContextOptions, type Identity } from '../certs/index.ts';
import { createAgentServer } from './agent-server.ts';
import { DirectoryFile } from './directory-file.ts';
import { parseRelayConfig, type RelayConfig, type RelayConfigInput } from './config.ts';
import { Heartbeat } from './heartbeat.ts';
import { Hub } from './hub.ts';
import { signUsage } from './metering.ts';
import { RelayMetrics } from './metrics.ts';
import { connectNatsRouter, type NatsRouter } from './nats/index.ts';
import { LocalRouter, type Router } from './router.ts';
import { PatientChannels, PatientGate, type CredentialTrust, type PatientTap } from './patients/index.ts';

export { AGENT_PATH } from './agent-server.ts';

/** A running relay. */
export interface RunningRelay {
  /** Agent (mTLS WebSocket) port. */
  port: number;
  /** Admin HTTP port, or undefined when the admin listener is disabled. */
  adminPort: number | undefined;
  /** Certificate listener (HTTPS: issuer keys, revocation lists, verifier page) port, or undefined when disabled. */
  certificatesPort: number | undefined;
  metrics: RelayMetrics;
  /** This node's id on a cluster (NATS configured), else undefined. */
  nodeId: string | undefined;
  /** Bytes queued in the relay towards agents right now. */
  bufferedBytes(): number;
  /** Re-reads the CRL (what SIGHUP does); true when a new CRL took effect. */
  reloadCrl(): boolean;
  /** The relay's certificate and key in force (a renewed pair on disk replaces it without a restart). */
  identity(): Identity;
  /** Re-reads the certificate, key and CA files now (they are also watched); true when a new identity took effect. */
  reloadIdentity(): boolean;
  /** Re-reads the member directory file (what SIGHUP does; it is also polled); true when a newer one took effect. */
  reloadDirectory(): Promise<boolean>;
  /** Graceful shutdown: refuse new work, notify agents, wait for transfers up to `graceMs`, close. */
  close(graceMs?: number): Promise<void>;
}

/** Extras for embedding: a logger or router other than the defaults. */
export interface StartOptions {
  logger?: Logger;
  router?: Router;
  env?: NodeJS.ProcessEnv;
  /** Sees every patient-channel byte the relay routes (tests of what the relay can read). */
  patientTap?: PatientTap;
}

/** Everything a relay node is made of once started; the steps below fill it in. */
interface Node {
  config: RelayConfig;
  limits: RelayConfig['limits'];
  log: Logger;
  identity: Identity;
  metrics: RelayMetrics;
  nats: NatsRouter | undefined;
  router: Router;
  watcher: CrlWatcher | undefined;
  /** Watches tls.cert, tls.key and tls.ca; `identity` above follows it. */
  identityWatcher: IdentityWatcher;
  /** The signed member directory file, when `directory.file` is set. */
  directory: DirectoryFile | undefined;
  hub: Hub;
  heartbeat: Heartbeat;
  server: HttpsServer;
  admin: HttpServer | undefined;
  /** The public certificate listener, when `certificates.enabled`. */
  certificates: HttpsServer | undefined;
  /** False once shutdown began: upgrades are refused and /readyz answers 503. */
  gate: { accepting: boolean };
  patients: PatientChannels;
}

/** Starts a relay from a (raw or parsed) config; resolves once both listeners are bound. */
export async function startRelay(input: RelayConfigInput | RelayConfig, options: StartOptions = {}): Promise<RunningRelay> {
  const env = options.env ?? process.env;
  const config = parseRelayConfig(input, {});
  const log = options.logger ?? createLogger({ level: config.log.level, base: { svc: 'hie-relay' } });
  const passphrase = config.tls.passphraseEnv ? env[config.tls.passphraseEnv] : undefined;
  const identity = loadRelayIdentity(config, env);
  const metrics = new RelayMetrics();
  const limits = { ...config.limits };
  const nats = config.nats && !options.router ? await connectCluster(config, limits, metrics, log, env) : undefined;
  const router = options.router ?? nats ?? new LocalRouter();
  const identityWatcher = new IdentityWatcher({ cert: config.tls.cert, key: config.tls.key, ca: config.tls.ca, passphrase }, identity);
  const node = buildNode({ config, limits, log, identity, metrics, nats, router, identityWatcher }, options.patientTap);
  await node.directory?.reload();
  node.directory?.start();
  const port = await listenAgents(node);
  const adminPort = await listenAdmin(node);
  const certificatesPort = await listenCertificates(node);
  log.info({ port, adminPort, certificatesPort, host: config.listen.host, node: nats?.nodeId }, 'relay listening');
  return {
    port,
    adminPort,
    certificatesPort,
    metrics,
    nodeId: nats?.nodeId,
    bufferedBytes: () => node.hub.bufferedBytes(),
    reloadCrl: () => node.watcher?.reload() ?? false,
    identity: () => node.identity,
    reloadIdentity: () => node.identityWatcher.reload(),
    reloadDirectory: () => node.directory?.reload() ?? Promise.resolve(false),
    close: shutdown(node),
  };
}

function loadRelayIdentity(config: RelayConfig, env: NodeJS.ProcessEnv): Identity {
  const passphrase = config.tls.passphraseEnv ? env[config.tls.passphraseEnv] : undefined;
  return loadIdentity({ cert: config.tls.cert, key: config.tls.key, ca: config.tls.ca, crl: config.tls.crl, passphrase });
}

async function connectCluster(
  config: RelayConfig,
  limits: RelayConfig['limits'],
  metrics: RelayMetrics,
  log: Logger,
  env: NodeJS.ProcessEnv,
): Promise<NatsRouter> {
  const host = hostname()
    .replace(/[^A-Za-z0-9_-]/g, '-')
    .slice(0, 48);
  const nodeId = config.node.id ?? `${host}-${randomBytes(4).toString('hex')}`;
  return connectNatsRouter({ config: config.nats as NonNullable<RelayConfig['nats']>, nodeId, limits, metrics, log, env });
}

/** The hub, the agent server, the heartbeat and the CRL watcher, wired together (nothing listens yet). */
function buildNode(
  parts: Pick<Node, 'config' | 'limits' | 'log' | 'identity' | 'metrics' | 'nats' | 'router' | 'identityWatcher'>,
  patientTap?: PatientTap,
): Node {
  const { config, limits, log, identity, metrics, router } = parts;
  const watcher = config.tls.crl ? new CrlWatcher(config.tls.crl, identity.caPem, { intervalMs: config.tls.crlPollMs }) : undefined;
  // Usage statements are signed with the identity in force, which a renewal replaces.
  const meter: ConstructorParameters<typeof Hub>[0]['meter'] = (t) => signUsage(t, config.tariff, node.identity.privateKey, node.identity.certPem);
  const directory = config.directory.file
    ? new DirectoryFile(config.directory.file, identity.caPem, () => watcher?.current, config.directory.pollMs)
    : undefined;
  const documents = (): Array<{ type: 'crl' | 'directory'; body: Buffer }> => [
    ...(watcher ? [{ type: 'crl' as const, body: Buffer.from(watcher.current.pem) }] : []),
    ...(directory?.current ? [{ type: 'directory' as const, body: Buffer.from(directory.current.jws) }] : []),
  ];
  const hub = new Hub({ limits, router, metrics, log, meter, documents });
  const heartbeat = new Heartbeat(hub.connections, metrics, log);
  const gate = { accepting: true };
  // eslint-disable-next-line prefer-const -- assigned below; the meter reads it once transfers run
  let node: Node;
  const patients = new PatientChannels({ registry: metrics.registry, log, tap: patientTap });
  const trust = (): CredentialTrust => ({
    caPem: node.identity.caPem,
    isRevoked: (serial) => watcher?.isRevoked(serial) ?? false,
    hubCertificate: (hospital) => patients.hubCertificate(hospital),
  });
  const patientGate = new PatientGate({ channels: patients, trust, log, accepting: () => gate.accepting });
  const server = createAgentServer({
    identity,
    watcher,
    hub,
    metrics,
    log,
    limits,
    accepting: () => gate.accepting,
    accepted: (ws) => heartbeat.track(ws),
    patients: { gate: patientGate, channels: patients },
  });
  node = { ...parts, watcher, directory, hub, heartbeat, server, admin: undefined, certificates: undefined, gate, patients };
  heartbeat.start(limits.pingIntervalMs);
  watchCrl(node);
  watchIdentity(node);
  watchDirectory(node);
  return node;
}

/**
 * A renewed certificate (or a new CA bundle during a rollover) takes effect for new handshakes without a restart;
 * live connections keep theirs. A pair that does not load (half-written, mismatched, expired) is refused and logged.
 */
function watchIdentity(node: Node): void {
  const { identityWatcher, server, log, metrics } = node;
  identityWatcher.on('change', (next, prev) => {
    server.setSecureContext(secureContextOptions(next, node.watcher?.current.pem));
    node.identity = next;
    metrics.certificateReloads.inc({ outcome: 'adopted' });
    log.info(
      { serial: next.serial, notAfter: new Date(next.certificate.validTo).toISOString(), previous: prev.serial, caChanged: next.caPem !== prev.caPem },
      'new relay certificate adopted',
    );
  });
  identityWatcher.on('rejected', (err) => {
    metrics.certificateReloads.inc({ outcome: 'rejected' });
    log.error({ code: err.code, msg: err.message, serial: node.identity.serial }, 'renewed certificate files refused; the certificate in force stays');
  });
  identityWatcher.start();
}

/** A newer signed directory goes to every connected agent; one that does not verify, or is older, stays with the operator. */
function watchDirectory({ directory, hub, log, metrics }: Node): void {
  directory?.on('change', (d) => {
    metrics.directorySequence.set(d.directory.sequence);
    const agents = hub.publish('directory', Buffer.from(d.jws));
    log.info({ sequence: d.directory.sequence, members: d.directory.members.length, agents }, 'member directory loaded');
  });
  directory?.on('rejected', (err) => {
    metrics.documentsRefused.inc({ type: 'directory' });
    log.error({ code: err.code, msg: err.message }, 'member directory refused; the previous one stays in force');
  });
}

/** New CRLs take effect for new handshakes, and live connections of newly revoked certificates are closed. */
function watchCrl(node: Node): void {
  const { watcher, server, hub, log, metrics } = node;
  watcher?.on('change', (crl) => {
    server.setSecureContext(secureContextOptions(node.identity, crl.pem));
    // Agents get the CRL before revoked ones are closed, so a revoked agent learns why from the CRL itself.
    const agents = hub.publish('crl', Buffer.from(crl.pem));
    const closed = hub.revoke((serial) => crl.revoked.has(serial));
    log.info({ crlNumber: crl.crlNumber, revoked: crl.revoked.size, closed, agents }, 'CRL reloaded');
  });
  watcher?.on('rejected', (err) => {
    metrics.documentsRefused.inc({ type: 'crl' });
    log.error({ code: err.code, msg: err.message }, 'CRL reload rejected; previous CRL stays in force');
  });
  watcher?.start();
}

/** Undoes what a failed start already began. */
async function abandon(node: Node): Promise<void> {
  node.heartbeat.stop();
  node.watcher?.stop();
  node.identityWatcher.stop();
  node.directory?.stop();
  node.hub.closeAll();
  await node.nats?.close();
}

async function listenAgents(node: Node): Promise<number> {
  node.server.listen(node.config.listen.port, node.config.listen.host);
  try {
    await once(node.server, 'listening');
  } catch (err) {
    await abandon(node);
    throw err;
  }
  return (node.server.address() as AddressInfo).port;
}

async function listenAdmin(node: Node): Promise<number | undefined> {
  const { config, metrics, router, hub, watcher } = node;
  if (!config.admin.enabled) return undefined;
  const health = (): ReturnType<typeof certificateHealth> => certificateHealth(node.identity, watcher?.current);
  const refresh = (): void => {
    metrics.bufferedBytes.set(hub.bufferedBytes());
    metrics.transfersActive.set(hub.activeTransfers);
    const h = health();
    metrics.certExpiry.set(h.certExpiresInSeconds);
    metrics.caExpiry.set(h.caExpiresInSeconds);
    if (h.crlAgeSeconds !== undefined) metrics.crlAge.set(h.crlAgeSeconds);
    if (h.crlNextUpdateInSeconds !== undefined) metrics.crlNextUpdate.set(h.crlNextUpdateInSeconds);
  };
  // Loaded only when enabled: express and helmet are the relay's largest dependencies.
  const { adminApp } = await import('./admin.ts');
  const federation = (): Record<string, unknown> => {
    const crl = watcher?.current;
    const d = node.directory?.current;
    return {
      crl: crl ? { crlNumber: crl.crlNumber ?? null, thisUpdate: crl.thisUpdate.toISOString(), nextUpdate: crl.nextUpdate?.toISOString() ?? null } : null,
      directory: d ? { sequence: d.directory.sequence, issuedAt: d.directory.issuedAt, signer: d.signerSerial, members: d.directory.members.length } : null,
    };
  };
  const admin = createHttpServer(adminApp({ metrics, router, ready: () => node.gate.accepting, refresh, health, federation }));
  admin.listen(config.admin.port, config.admin.host);
  try {
    await once(admin, 'listening');
  } catch (err) {
    node.server.close();
    await abandon(node);
    throw err;
  }
  node.admin = admin;
  return (admin.address() as AddressInfo).port;
}

/** The public certificate listener (docs/certificates.md): plain HTTPS with the relay certificate, no client certificate asked. */
async function listenCertificates(node: Node): Promise<number | undefined> {
  const { config } = node;
  if (!config.certificates.enabled || config.certificates.issuersFile === undefined) return undefined;
  const { issuersApp } = await import('./issuers.ts');
  const app = issuersApp({ file: config.certificates.issuersFile, caPem: () => node.identity.caPem });
  const server = createHttpsServer({ cert: node.identity.certPem, key: node.identity.keyPem }, app);
  // A renewed relay certificate takes effect here too.
  node.identityWatcher.on('change', (id: Identity) => server.setSecureContext({ cert: id.certPem, key: id.keyPem }));
  server.listen(config.certificates.port, config.certificates.host);
  try {
    await once(server, 'listening');
  } catch (err) {
    node.server.close();
    node.admin?.close();
    await abandon(node);
    throw err;
  }
  node.certificates = server;
  return (server.address() as AddressInfo).port;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The relay's `close`: refuse new work, let open transfers finish for up to `graceMs`, then close everything (once). */
function shutdown(node: Node): (graceMs?: number) => Promise<void> {
  let closing: Promise<void> | undefined;
  return (graceMs: number = node.limits.shutdownGraceMs): Promise<void> => {
    node.heartbeat.stop();
    closing ??= drainAndClose(node, graceMs);
    return closing;
  };
}

async function drainAndClose(node: Node, graceMs: number): Promise<void> {
  const { hub, log, server, admin, certificates } = node;
  node.gate.accepting = false;
  server.close();
  log.info({ active: hub.activeTransfers, graceMs }, 'shutting down');
  hub.startDraining(graceMs);
  const deadline = Date.now() + graceMs;
  while (hub.activeTransfers > 0 && Date.now() < deadline) await sleep(50);
  hub.closeAll();
  node.patients.closeAll();
  node.watcher?.stop();
  node.identityWatcher.stop();
  node.directory?.stop();
  const until = Date.now() + 3000;
  while (hub.connections.size > 0 && Date.now() < until) await sleep(20);
  server.closeAllConnections();
  await node.nats?.close();
  if (admin) {
    admin.closeAllConnections();
    await new Promise<void>((r) => admin.close(() => r()));
  }
  if (certificates) {
    certificates.closeAllConnections();
    await new Promise<void>((r) => certificates.close(() => r()));
  }
  log.info('relay stopped');
}
