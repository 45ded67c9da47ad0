import { once } from 'node:events';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import express from 'express';
import type { Logger } from 'pino';
import { createLogger } from '../common/index.ts';
import { createKeyBundle, CrlWatcher, generateAgentKeys, loadIdentity, writeFileAtomic, type Identity, type KeyBundle } from '../certs/index.ts';
import { Ledger, Replicator, type ReplicationTransport, type Trust } from '../ledger/index.ts';
import { RelayClient, DEFAULT_MAX_MESSAGE, type InboundTransfer, type RelayMessage } from '../relay/protocol/index.ts';
import { createApiHandler, DEFAULT_JSON_LIMIT, type FastRoute } from './api/http.ts';
import { buildOpenApi } from './api/openapi.ts';
import { consentRoutes } from './api/routes/consents.ts';
import { exchangeRoutes, submitRoute } from './api/routes/exchanges.ts';
import { inboxRoutes } from './api/routes/inbox.ts';
import { ledgerRoutes } from './api/routes/ledger.ts';
import { requestRoutes } from './api/routes/requests.ts';
import { fhirAuditRoutes } from './api/routes/fhir-audit.ts';
import { AccessLog, consoleRouter, LedgerIndex, SessionStore } from './console/index.ts';
import { AGENT_VERIFY_GRACE_SECONDS } from './api/routes/ledger.ts';
import { patientHash } from './consent/patient.ts';
import { loadApiTokens, loadPatientSecret, type AgentConfig } from './config.ts';
import { FileReplayStore, KeyRing, loadAgentKeys, recipientKeys, saveAgentKeys, senderKeys, type LocalKeys } from './crypto/index.ts';
import { PeerDirectory } from './engine/peers.ts';
import { Receiver } from './engine/receiver.ts';
import { ExchangeEngine } from './engine/index.ts';
import { MessageDispatcher } from './engine/dispatch.ts';
import { encodeLedgerWire, encodeWire, type WireMessage } from './engine/wire.ts';
import { AgentMetrics } from './metrics.ts';
import { ConsentService } from './services/consents.ts';
import { ExchangeService } from './services/exchanges.ts';
import { RequestService } from './services/requests.ts';
import { StateStore } from './store/state.ts';
import { InboxDirectory } from './store/directory.ts';
import { Inbox, type InboxMeta } from './store/inbox.ts';
import { Outbox } from './store/outbox.ts';

/** A key bundle is re-issued when it expires within this many days. */
export const BUNDLE_RENEW_DAYS = 30;

/** A running agent: its API port and the parts tests and tools look at. */
export interface RunningAgent {
  id: string;
  config: AgentConfig;
  apiPort: number;
  ledger: Ledger;
  engine: ExchangeEngine;
  relay: RelayClient;
  replicator: Replicator;
  metrics: AgentMetrics;
  /** Re-reads the CRL file now (what SIGHUP does; the file is also polled); true when a new CRL took effect. */
  reloadCrl(): boolean;
  /** Stops the API, the engine, replication and the relay link, then closes the stores. */
  close(): Promise<void>;
}

/** Extras for embedding the agent. */
export interface StartAgentOptions {
  env?: NodeJS.ProcessEnv;
  logger?: Logger;
}

/** How often the replay list forgets exchange ids past the replay window. */
export const REPLAY_PRUNE_MS = 3600_000;

function loadKeys(dir: string): Promise<LocalKeys> {
  if (existsSync(join(dir, 'signing.key.pem'))) return loadAgentKeys(dir);
  return saveAgentKeys(dir, generateAgentKeys());
}

async function loadBundle(dir: string, identity: Identity, keys: LocalKeys): Promise<KeyBundle> {
  const path = join(dir, 'bundle.json');
  if (existsSync(path)) {
    const b = JSON.parse(readFileSync(path, 'utf8')) as KeyBundle;
    const fresh = Date.parse(b.expires) - Date.now() > BUNDLE_RENEW_DAYS * 86_400_000;
    if (fresh && b.cert === identity.certPem && b.signing.kid === keys.signingKid) return b;
  }
  const bundle = await createKeyBundle(identity, keys);
  writeFileAtomic(path, `${JSON.stringify(bundle, null, 2)}\n`, 0o600);
  return bundle;
}

/** Identity, trust and keys: who this agent is (checked against its certificate). */
interface Base {
  identity: Identity;
  watcher: CrlWatcher | undefined;
  trust: () => Trust;
  keys: LocalKeys;
  bundle: KeyBundle;
  tokens: ReturnType<typeof loadApiTokens>;
  secret: Buffer;
}

async function loadBase(config: AgentConfig, env: NodeJS.ProcessEnv, log: Logger): Promise<Base> {
  const passphrase = config.identity.passphraseEnv ? env[config.identity.passphraseEnv] : undefined;
  const identity = loadIdentity({ ...config.identity, passphrase });
  if (identity.hospitalId !== config.id) {
    throw new Error(`config id '${config.id}' does not match the certificate, which names '${identity.hospitalId ?? 'no hospital'}'`);
  }
  const tokens = loadApiTokens(config, env);
  const secret = loadPatientSecret(config, env);
  const watcher = config.identity.crl ? new CrlWatcher(config.identity.crl, identity.caPem).start() : undefined;
  watcher?.on('change', (crl) => log.info({ crlNumber: crl.crlNumber, revoked: crl.revoked.size }, 'CRL reloaded'));
  watcher?.on('rejected', (err) => log.error({ code: err.code, msg: err.message }, 'CRL reload rejected; previous CRL stays in force'));
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const keysDir = join(config.dataDir, 'keys');
  const keys = await loadKeys(keysDir);
  const bundle = await loadBundle(keysDir, identity, keys);
  return { identity, watcher, trust: () => ({ caPem: identity.caPem, crl: watcher?.current }), keys, bundle, tokens, secret };
}

/** What the agent keeps on disk, opened and recovered after a crash. */
interface Stores {
  ledger: Ledger;
  state: StateStore;
  inbox: Inbox;
  directory: InboxDirectory | undefined;
  outbox: Outbox;
  replay: FileReplayStore;
  replayTimer: NodeJS.Timeout;
}

async function openStores(config: AgentConfig, base: Base, log: Logger): Promise<Stores> {
  const ledger = await Ledger.open({
    path: join(config.dataDir, 'ledger'),
    trust: base.trust(),
    author: { feed: config.id, signingKey: base.keys.signing.privateKey, bundle: base.bundle },
  });
  const state = new StateStore(join(config.dataDir, 'state'));
  await state.open();
  const inbox = new Inbox(join(config.dataDir, 'inbox'), state.inbox);
  const discarded = await inbox.recover();
  if (discarded > 0) log.warn({ discarded }, 'discarded partially received exchanges left by a crash');
  const directory = config.inbox.directory ? new InboxDirectory(config.inbox.directory, inbox, log) : undefined;
  await directory?.open();
  const outbox = new Outbox(join(config.dataDir, 'outbox'));
  await outbox.recover(new Set((await state.exchanges.unfinished()).map((r) => r.id)));
  const replay = await FileReplayStore.open(join(config.dataDir, 'replay.log'));
  // Ids past the replay window would be refused as stale anyway: forgetting them keeps the set (in memory and
  // on disk, read whole at start-up) to about a window's worth of envelopes.
  const pruneReplay = (): Promise<void> =>
    replay.prune(new Date()).then(
      (n) => void (n > 0 && log.info({ forgotten: n }, 'replay list pruned')),
      (err: Error) => log.warn({ err: { message: err.message } }, 'cannot prune the replay list'),
    );
  await pruneReplay();
  const replayTimer = setInterval(() => void pruneReplay(), REPLAY_PRUNE_MS);
  replayTimer.unref();
  return { ledger, state, inbox, directory, outbox, replay, replayTimer };
}

/** The relay connection and what rides on it: peer key bundles, agent messages and ledger replication. */
interface Link {
  relay: RelayClient;
  send: (to: string, message: WireMessage) => void;
  peers: PeerDirectory;
  replicator: Replicator;
  ledgerHandlers: Set<(peer: string, message: string | Uint8Array) => void>;
  /** Stops the timer that learns new bundles from replicated feeds. */
  stop(): void;
}

async function linkRelay(config: AgentConfig, base: Base, ledger: Ledger, log: Logger): Promise<Link> {
  const keyring = new KeyRing({ caPem: base.identity.caPem, crl: () => base.watcher?.current });
  await keyring.add(base.bundle);
  const relay = new RelayClient({ urls: config.relay.urls, identity: base.identity });
  const send = (to: string, message: WireMessage): void => {
    try {
      relay.sendMessage(to, encodeWire(message));
    } catch (err) {
      log.debug({ to, t: message.t, err: { message: (err as Error).message } }, 'agent message not sent');
    }
  };
  const peers = new PeerDirectory(keyring, () => base.bundle, send);
  await peers.learnFromLedger(ledger);
  const ledgerHandlers = new Set<(peer: string, message: string | Uint8Array) => void>();
  const transport: ReplicationTransport = {
    send: (peer, message) => {
      try {
        relay.sendMessage(peer, encodeLedgerWire(message));
      } catch {
        // Not connected or peer offline: gossip repeats on its own.
      }
    },
    onMessage: (handler) => {
      ledgerHandlers.add(handler);
      return () => ledgerHandlers.delete(handler);
    },
  };
  const replicator = new Replicator(ledger, transport, { peers: config.peers, maxMessageBytes: DEFAULT_MAX_MESSAGE - 1024 });
  let learnTimer: NodeJS.Timeout | undefined;
  replicator.on('stored', () => {
    // New feeds or rotations may carry bundles; learn them, at most once a second.
    learnTimer ??= setTimeout(() => {
      learnTimer = undefined;
      void peers.learnFromLedger(ledger);
    }, 1000);
  });
  replicator.on('equivocation', (info: unknown) => log.error({ info }, 'ledger equivocation detected'));
  return { relay, send, peers, replicator, ledgerHandlers, stop: () => learnTimer && clearTimeout(learnTimer) };
}

/** The exchange machinery: consents, the engine (send), the receiver, records requests, and the submission service. */
interface Exchange {
  consents: ConsentService;
  engine: ExchangeEngine;
  requests: RequestService;
  exchanges: ExchangeService;
}

function buildExchange(config: AgentConfig, env: NodeJS.ProcessEnv, base: Base, stores: Stores, link: Link, metrics: AgentMetrics, log: Logger): Exchange {
  const { ledger, state, inbox, directory, outbox, replay } = stores;
  const { relay, send, peers } = link;
  const local = (): LocalKeys => base.keys;
  const consents = new ConsentService(ledger, config.id, base.secret, undefined, config.patients.identifierSystem);
  const engine = new ExchangeEngine({
    self: config.id,
    store: state.exchanges,
    outbox,
    consents,
    peers,
    ledger,
    relay,
    send,
    sender: () => senderKeys(config.id, local()),
    logger: log,
    maxConcurrent: config.limits.maxConcurrentSends,
    maxBatch: config.limits.maxBatchExchanges,
  });
  engine.on('delivered', (r) => metrics.exchange('out', 'delivered', r.bytes));
  engine.on('failed', (r) => metrics.exchange('out', 'failed', r.bytes));
  engine.on('retry', () => metrics.retries.inc());
  engine.on('batch', (size) => metrics.batchSize.observe(size));
  const webhook = config.inbox.webhook;
  const notify = (event: Record<string, unknown>, id: string): void => {
    if (webhook) void notifyWebhook(webhook.url, webhook.tokenEnv ? env[webhook.tokenEnv] : undefined, event, id, log);
  };
  const receiver = new Receiver({
    self: config.id,
    inbox,
    receipts: state.receipts,
    ledger,
    peers,
    replay,
    recipientKeys: () => recipientKeys(config.id, [local()]),
    signer: () => senderKeys(config.id, local()),
    send,
    logger: log,
    onDelivered: (meta: InboxMeta) => {
      metrics.exchange('in', 'delivered', meta.bytes);
      if (directory) void directory.copy(meta);
      notify({ event: 'inbox.delivered', item: meta }, meta.exchangeId);
    },
    onRefused: (code) => metrics.refused.inc({ code }),
  });
  const requests = new RequestService({
    self: config.id,
    secret: base.secret,
    identifierSystem: config.patients.identifierSystem,
    store: state.requests,
    consents,
    peers,
    keys: local,
    send,
    logger: log,
    onIncoming: (request) => notify({ event: 'request.received', request }, request.id),
  });
  const dispatcher = new MessageDispatcher({
    engine,
    receiver,
    requests,
    peers,
    ledger: (from, message) => {
      for (const h of link.ledgerHandlers) h(from, message);
    },
    logger: log,
  });
  relay.on('message', (m: RelayMessage) => dispatcher.dispatch(m));
  relay.on('transfer', (t: InboundTransfer) => {
    // onTransfer never throws; a rejection here would be a bug worth a log line, not a stopped agent.
    receiver
      .onTransfer(t)
      .catch((err: Error) => log.error({ from: t.from, err: { name: err?.name, message: err?.message } }, 'an inbound transfer could not be handled'));
  });
  const exchanges = new ExchangeService({
    self: config.id,
    secret: base.secret,
    identifierSystem: config.patients.identifierSystem,
    gate: engine.gate,
    store: state.exchanges,
    outbox,
    maxBytes: config.limits.maxExchangeBytes,
    inlineBodyBytes: config.limits.inlineBodyBytes,
    isRevoked: (to) => peers.isRevoked(to),
    enqueue: (id) => engine.enqueue(id),
    ...(config.limits.sendWhileUploading ? { live: (x: Parameters<ExchangeEngine['live']>[0]) => engine.live(x) } : {}),
  });
  return { consents, engine, requests, exchanges };
}

/** Logs the relay link's state changes and tells the engine and the replicator when it is up. */
function watchRelay(link: Link, engine: ExchangeEngine, metrics: AgentMetrics, log: Logger): void {
  const { relay, replicator, peers } = link;
  relay.on('ready', () => {
    metrics.relayConnected.set(1);
    log.info({ relay: relay.url }, 'connected to the relay');
    engine.onRelayReady();
    void replicator.announce().catch(() => undefined);
  });
  relay.on('disconnected', (info) => {
    metrics.relayConnected.set(0);
    log.warn({ code: info.code }, 'relay connection lost; reconnecting');
  });
  relay.on('connectError', (err) => log.warn({ code: err.code, err: { message: err.message } }, 'cannot connect to the relay; retrying'));
  relay.on('undeliverable', (err) => {
    log.debug({ to: err.to, code: err.code }, 'message undeliverable');
    peers.onUndeliverable(err.to);
  });
}

/** The local API (`/v1`, `/healthz`, `/metrics`, the OpenAPI document), listening. */
async function serveApi(config: AgentConfig, base: Base, stores: Stores, link: Link, x: Exchange, metrics: AgentMetrics, log: Logger): Promise<Server> {
  const { ledger, state, inbox } = stores;
  const { relay, replicator } = link;
  const v1 = express.Router();
  v1.use(consentRoutes(x.consents, config.id, { jsonLimit: DEFAULT_JSON_LIMIT }));
  v1.use(exchangeRoutes(x.exchanges, state.exchanges, x.requests));
  v1.use(requestRoutes(x.requests, state.requests, { jsonLimit: DEFAULT_JSON_LIMIT }));
  v1.use(inboxRoutes(inbox));
  v1.use(ledgerRoutes(ledger, replicator, base.trust, config.id));
  // The audit API and the console read one index of the ledger; the clear patient id a query names is hashed and dropped.
  const index = new LedgerIndex(ledger, config.id);
  const hashPatient = (id: string): string => patientHash(base.secret, id, config.patients.identifierSystem);
  const accessLog = new AccessLog(join(config.dataDir, 'console', 'access.log'));
  const fhir = fhirAuditRoutes(index, ledger, hashPatient, accessLog);
  const consoleApp = config.console.enabled
    ? consoleRouter(
        {
          self: config.id,
          ledger,
          index,
          hashPatient,
          accessLog,
          trust: base.trust,
          certificateValidTo: () => new Date(base.identity.certificate.validTo).toISOString(),
          crl: () => base.watcher?.current,
          replication: () => replicator.status(),
          graceSeconds: AGENT_VERIFY_GRACE_SECONDS,
        },
        { sessions: new SessionStore({ idleMs: config.console.sessionIdleMinutes * 60_000 }) },
      )
    : undefined;
  const open = express.Router();
  // Outgoing exchanges not yet delivered or failed (`outbox`): a queue that only grows means the relay or a recipient is away.
  const health: FastRoute = {
    method: 'GET',
    path: '/healthz',
    route: '/healthz',
    open: true,
    handle: async () => ({
      status: 200,
      body: { status: 'ok', agent: config.id, relay: relay.connected ? 'connected' : 'disconnected', outbox: await state.exchanges.countUnfinished() },
    }),
  };
  open.get('/healthz', async (req, res) => {
    const answer = await health.handle(req, '');
    res.status(answer.status).json(answer.body);
  });
  // Browsers ask for /favicon.ico whatever the console's pages name: answered with nothing rather than a 404 error.
  if (consoleApp) open.get('/favicon.ico', (_req, res) => void res.status(204).end());
  open.get('/metrics', async (_req, res) => {
    metrics.outboxQueued.set(await state.exchanges.countUnfinished());
    const head = ledger.head();
    if (head) metrics.ledgerSeq.set(head.seq);
    res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });
  const handler = createApiHandler({
    tokens: base.tokens,
    logger: log,
    v1,
    open,
    openapi: buildOpenApi(config.id),
    fhir,
    ...(consoleApp ? { console: consoleApp } : {}),
    fast: [submitRoute(x.exchanges, x.requests), health],
    auth: { onFailure: (outcome) => metrics.authFailures.inc({ outcome }) },
  });
  const server: Server = createServer(handler).listen(config.api.port, config.api.host);
  await once(server, 'listening');
  server.requestTimeout = 0; // Large uploads stream for as long as they need; idle sockets still time out.
  return server;
}

/**
 * Starts a hospital agent from a validated config: identity and end-to-end
 * keys, the stores, the relay link with ledger replication, the exchange
 * engine (send and receive), and the local API.
 */
export async function startAgent(config: AgentConfig, options: StartAgentOptions = {}): Promise<RunningAgent> {
  const env = options.env ?? process.env;
  const log = options.logger ?? createLogger({ level: config.log.level, base: { svc: 'hie-agent', agent: config.id } });
  const base = await loadBase(config, env, log);
  const stores = await openStores(config, base, log);
  const metrics = new AgentMetrics();
  const link = await linkRelay(config, base, stores.ledger, log);
  const x = buildExchange(config, env, base, stores, link, metrics, log);
  watchRelay(link, x.engine, metrics, log);
  const server = await serveApi(config, base, stores, link, x, metrics, log);
  const apiPort = (server.address() as AddressInfo).port;

  link.replicator.start();
  void link.relay.connect().catch(() => undefined);
  await x.engine.start();
  // Items delivered while the directory was not set, or whose copy a crash or an error cut short.
  const directory = stores.directory;
  if (directory) {
    void directory.catchUp().then(
      (n) => void (n > 0 && log.info({ items: n, dir: directory.dir }, 'inbox items written to the EHR directory at start-up')),
      (err: Error) => log.warn({ err: { message: err.message } }, 'cannot list the inbox for the EHR directory'),
    );
  }
  log.info({ api: `${config.api.host}:${apiPort}`, peers: config.peers }, 'hospital agent started');

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      x.engine.stop();
      link.replicator.stop();
      link.stop();
      clearInterval(stores.replayTimer);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await link.relay.close().catch(() => undefined);
      base.watcher?.stop();
      await stores.replay.close().catch(() => undefined);
      await stores.state.close();
      await stores.ledger.close();
      log.info('hospital agent stopped');
    })();
    return closing;
  };
  return {
    id: config.id,
    config,
    apiPort,
    ledger: stores.ledger,
    engine: x.engine,
    relay: link.relay,
    replicator: link.replicator,
    metrics,
    reloadCrl: () => base.watcher?.reload() ?? false,
    close,
  };
}

/** Tells the EHR about a new inbox item or records request (one attempt; the EHR can also poll the API). */
async function notifyWebhook(url: string, token: string | undefined, event: Record<string, unknown>, id: string, log: Logger): Promise<void> {
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(event),
      signal: AbortSignal.timeout(10_000),
    });
    if (!res.ok) log.warn({ id, status: res.status }, 'EHR webhook refused the notification');
  } catch (err) {
    log.warn({ id, err: { message: (err as Error).message } }, 'EHR webhook unreachable');
  }
}
