import { once } from 'node:events';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import express from 'express';
import type { Logger } from 'pino';
import { createLogger } from '../common/index.ts';
import {
  certificateHealth,
  createKeyBundle,
  CrlWatcher,
  generateAgentKeys,
  IdentityWatcher,
  loadIdentity,
  writeFileAtomic,
  type Identity,
  type KeyBundle,
} from '../certs/index.ts';
import {
  FeedRecovery,
  hexDigest,
  Ledger,
  parseWitnessPolicy,
  Replicator,
  Witness,
  type RecoveryOutcome,
  type ReplicationTransport,
  type Trust,
  type WitnessPolicy,
} from '../ledger/index.ts';
import { RelayClient, CLOSE_CODES, DEFAULT_MAX_MESSAGE, RENEWAL_CLOSE_REASON, type InboundTransfer, type RelayMessage } from '../relay/protocol/index.ts';
import { createApiHandler, DEFAULT_JSON_LIMIT, type FastRoute } from './api/http.ts';
import { AgentError } from './errors.ts';
import { buildOpenApi } from './api/openapi.ts';
import { consentRoutes, decisionRoutes } from './api/routes/consents.ts';
import { patientRoutes } from './api/routes/patients.ts';
import { startPatients, type RunningPatients } from './patients/start.ts';
import { exchangeRoutes, submitRoute } from './api/routes/exchanges.ts';
import { federationRoutes } from './api/routes/federation.ts';
import { certificateRoutes } from './api/routes/certificates.ts';
import { CertificateIssuer, loadIssuerKey } from './certificates/index.ts';
import { inboxRoutes } from './api/routes/inbox.ts';
import { ledgerRoutes } from './api/routes/ledger.ts';
import { requestRoutes } from './api/routes/requests.ts';
import { prescriptionRoutes } from './api/routes/prescriptions.ts';
import { PrescriptionService, PrescriptionStore } from './prescriptions/index.ts';
import { claimRoutes } from './api/routes/claims.ts';
import { eligibilityRoutes } from './api/routes/eligibility.ts';
import {
  ClaimService,
  ClaimStore,
  EligibilityService,
  EligibilityStore,
  encodeClaimWire,
  encodeEligibilityWire,
  type ClaimWireMessage,
  type EligibilityWireMessage,
} from './claims/index.ts';
import { fhirAuditRoutes } from './api/routes/fhir-audit.ts';
import { AccessLog, consoleRouter, LedgerIndex, SessionStore } from './console/index.ts';
import { AGENT_VERIFY_GRACE_SECONDS } from './api/routes/ledger.ts';
import { patientHash } from './consent/patient.ts';
import { loadApiTokens, loadPatientSecret, type AgentConfig } from './config.ts';
import { FileReplayStore, KeyRing, loadAgentKeys, recipientKeys, saveAgentKeys, senderKeys, type LocalKeys } from './crypto/index.ts';
import { PeerDirectory } from './engine/peers.ts';
import { Receiver } from './engine/receiver.ts';
import { fhirValidator, loadR4Definitions, type FhirValidator } from './fhir/index.ts';
import { ExchangeEngine } from './engine/index.ts';
import { MessageDispatcher } from './engine/dispatch.ts';
import { encodeLedgerWire, encodeWire, type WireMessage } from './engine/wire.ts';
import { AgentMetrics } from './metrics.ts';
import { assertMember, FederationDocuments, REVOKED_REASON, SelfStanding } from './federation/index.ts';
import { ConsentService } from './services/consents.ts';
import { ConsentDecisions } from './store/consent-decisions.ts';
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
  /** This hospital's consents (what `/v1/consents` records; a patient-signed one is recorded here too). */
  consents: ConsentService;
  relay: RelayClient;
  replicator: Replicator;
  metrics: AgentMetrics;
  /**
   * Settles once the agent's own ledger feed is back from its peers and appends go on
   * (docs/recovery.md); at once when there was nothing to recover.
   */
  recovered: Promise<RecoveryOutcome | undefined>;
  /** Where that recovery stands (peers answered, refused, silent); undefined when there was none. */
  recoveryStatus(): RecoveryOutcome | undefined;
  /** Re-reads the CRL file now (what SIGHUP does; the file is also polled); true when a new CRL took effect. */
  reloadCrl(): boolean;
  /** The agent's TLS certificate and key in force (a renewed pair on disk replaces it without a restart). */
  identity(): Identity;
  /** Re-reads the certificate, key and CA files now (they are also watched); true when a new identity took effect. */
  reloadIdentity(): boolean;
  /** The CRL and member directory in force (from the relay, the CRL file or the data directory). */
  federation: FederationDocuments;
  /** Whether this agent's own certificate is known to be revoked. */
  standing: SelfStanding;
  /** The patient party (`patients.app.enabled`): enrolment, consent requests, the access log; undefined when off. */
  patients: RunningPatients | undefined;
  /** Stops the API, the engine, replication and the relay link, then closes the stores. */
  close(): Promise<void>;
}

/** Extras for embedding the agent. */
export interface StartAgentOptions {
  env?: NodeJS.ProcessEnv;
  logger?: Logger;
}

/** Seconds a write refused while the agent recovers its feed tells the client to wait (Retry-After). */
export const RECOVERY_RETRY_AFTER_S = 5;
/** How long a write waits for a recovery under way before it is answered 503 ERR_RECOVERING, in ms. */
export const RECOVERY_HOLD_MS = 10_000;

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
  /** Watches the certificate, key and CA files; a renewed pair is used for the next relay connection. */
  identityWatcher: IdentityWatcher;
  federation: FederationDocuments;
  trust: () => Trust;
  keys: LocalKeys;
  bundle: KeyBundle;
  tokens: ReturnType<typeof loadApiTokens>;
  secret: Buffer;
  /** The keys were on disk before this start: a feed signed with them may exist at the peers. */
  keysKept: boolean;
}

async function loadBase(config: AgentConfig, env: NodeJS.ProcessEnv, log: Logger, metrics: AgentMetrics): Promise<Base> {
  const passphrase = config.identity.passphraseEnv ? env[config.identity.passphraseEnv] : undefined;
  const identity = loadIdentity({ ...config.identity, passphrase });
  if (identity.hospitalId !== config.id) {
    throw new Error(`config id '${config.id}' does not match the certificate, which names '${identity.hospitalId ?? 'no hospital'}'`);
  }
  const tokens = loadApiTokens(config, env);
  const secret = loadPatientSecret(config, env);
  // The FHIR R4 definitions are indexed once, here, not on the first request (about a second).
  const indexing = performance.now();
  loadR4Definitions();
  log.info({ ms: Math.round(performance.now() - indexing) }, 'FHIR R4 definitions loaded');
  const watcher = config.identity.crl ? new CrlWatcher(config.identity.crl, identity.caPem).start() : undefined;
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const federation = new FederationDocuments(config.dataDir, identity.caPem);
  watchFederation(federation, metrics, log);
  await federation.open(watcher?.current);
  metrics.crlNumber.set(federation.crl?.crlNumber ?? 0);
  metrics.directorySequence.set(federation.directory?.directory.sequence ?? 0);
  watcher?.on('change', (crl) => offerDocument(federation, 'crl', crl.pem, 'identity.crl', log));
  watcher?.on('rejected', (err) => log.error({ code: err.code, msg: err.message }, 'CRL reload rejected; previous CRL stays in force'));
  const keysDir = join(config.dataDir, 'keys');
  const keysKept = existsSync(join(keysDir, 'signing.key.pem'));
  const keys = await loadKeys(keysDir);
  const bundle = await loadBundle(keysDir, identity, keys);
  const identityWatcher = new IdentityWatcher({ ...config.identity, passphrase }, identity, { expectId: config.id });
  return {
    identity,
    watcher,
    identityWatcher,
    federation,
    trust: () => ({ caPem: identity.caPem, crl: federation.crl }),
    keys,
    bundle,
    tokens,
    secret,
    keysKept,
  };
}

/** Offers a CRL or directory; one that cannot be kept (e.g. the disk is full) is logged, and the one in force stays. */
function offerDocument(federation: FederationDocuments, type: 'crl' | 'directory', text: string, source: string, log: Logger): void {
  const failed = (err: unknown): void =>
    log.error({ type, source, err: { code: (err as NodeJS.ErrnoException).code, message: (err as Error).message } }, 'cannot keep a federation document');
  if (type === 'directory') {
    federation.offerDirectory(text, source).catch(failed);
    return;
  }
  try {
    federation.offerCrl(text, source);
  } catch (err) {
    failed(err);
  }
}

/** Logs and counts what the agent adopts and refuses. */
function watchFederation(federation: FederationDocuments, metrics: AgentMetrics, log: Logger): void {
  federation.on('crl', (crl, source) => {
    metrics.documentsAdopted.inc({ type: 'crl' });
    metrics.crlNumber.set(crl.crlNumber ?? 0);
    log.info({ crlNumber: crl.crlNumber, revoked: crl.revoked.size, nextUpdate: crl.nextUpdate?.toISOString(), source }, 'CRL adopted');
  });
  federation.on('directory', (d, source) => {
    metrics.documentsAdopted.inc({ type: 'directory' });
    metrics.directorySequence.set(d.directory.sequence);
    log.info({ sequence: d.directory.sequence, members: d.directory.members.length, source }, 'member directory adopted');
  });
  federation.on('refused', ({ type, reason, source, message }) => {
    metrics.documentsRefused.inc({ type, reason });
    log.warn(
      { type, reason, source, msg: message },
      type === 'crl' ? 'CRL refused; the one in force stays' : 'member directory refused; the one in force stays',
    );
  });
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
    // Keys new to this start have signed nothing anyone holds; with peers to ask, appends wait for recovery.
    recover: base.keysKept && config.peers.length > 0,
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
  transport: ReplicationTransport;
  /** This agent as a witness of its peers' feeds (cosignatures, split-view and rollback evidence). */
  witness: Witness;
  /** When a checkpoint counts as witnessed, for the proofs the API serves. */
  policy: WitnessPolicy;
  ledgerHandlers: Set<(peer: string, message: string | Uint8Array) => void>;
  /** Stops the timer that learns new bundles from replicated feeds. */
  stop(): void;
}

async function linkRelay(config: AgentConfig, base: Base, ledger: Ledger, log: Logger): Promise<Link> {
  const keyring = new KeyRing({ caPem: base.identity.caPem, crl: () => base.federation.crl });
  await keyring.add(base.bundle);
  const { federation } = base;
  // An expired CRL would fail the relay's TLS check and with it the one way a fresh CRL arrives: the relay link dials
  // without it (the relay's certificate is still checked against the CA); peers are still checked against it.
  const relay = new RelayClient({ urls: config.relay.urls, identity: base.identity, crl: () => (federation.crlExpired() ? undefined : federation.crl?.pem) });
  relay.on('document', (type, body) => offerDocument(federation, type, body.toString('utf8'), 'relay', log));
  const send = (to: string, message: WireMessage): void => {
    try {
      relay.sendMessage(to, encodeWire(message));
    } catch (err) {
      log.debug({ to, t: message.t, err: { message: (err as Error).message } }, 'agent message not sent');
    }
  };
  const peers = new PeerDirectory(keyring, () => base.bundle, send);
  peers.membership = (to) => assertMember(federation.directory, to);
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
  const policy = parseWitnessPolicy(config.ledger.witness.policy);
  const witness = new Witness(ledger, { id: config.id, signingKey: base.keys.signing.privateKey });
  witness.on('equivocation', (ev: { feed: string; detail: string }) => log.error({ feed: ev.feed, detail: ev.detail }, 'ledger split view detected'));
  witness.on('rollback', (ev: { feed: string; detail: string }) => log.error({ feed: ev.feed, detail: ev.detail }, 'ledger rollback detected'));
  const replicator = new Replicator(ledger, transport, {
    peers: config.peers,
    maxMessageBytes: DEFAULT_MAX_MESSAGE - 1024,
    witness,
    mode: config.replication.mode,
  });
  let learnTimer: NodeJS.Timeout | undefined;
  replicator.on('stored', () => {
    // New feeds or rotations may carry bundles; learn them, at most once a second.
    learnTimer ??= setTimeout(() => {
      learnTimer = undefined;
      void peers.learnFromLedger(ledger);
    }, 1000);
  });
  replicator.on('equivocation', (info: unknown) => log.error({ info }, 'ledger equivocation detected'));
  return { relay, send, peers, replicator, transport, witness, policy, ledgerHandlers, stop: () => learnTimer && clearTimeout(learnTimer) };
}

/** The exchange machinery: consents, the engine (send), the receiver, records requests, and the submission service. */
interface Exchange {
  consents: ConsentService;
  decisions: ConsentDecisions;
  engine: ExchangeEngine;
  requests: RequestService;
  exchanges: ExchangeService;
  prescriptions: PrescriptionService;
  prescriptionStore: PrescriptionStore;
  claims: ClaimService;
  claimStore: ClaimStore;
  eligibility: EligibilityService;
  eligibilityStore: EligibilityStore;
  /** Where submitted FHIR Bundles are validated (`limits.fhirValidationThreads`). */
  validator: FhirValidator;
}

function buildExchange(config: AgentConfig, env: NodeJS.ProcessEnv, base: Base, stores: Stores, link: Link, metrics: AgentMetrics, log: Logger): Exchange {
  const { ledger, state, inbox, directory, outbox, replay } = stores;
  const { relay, send, peers } = link;
  const local = (): LocalKeys => base.keys;
  const decisions = new ConsentDecisions(state.db, config.limits.maxConsentDecisions, (err) =>
    log.warn({ err: { message: (err as Error).message } }, 'consent decision not logged'),
  );
  const member = (id: string): void => assertMember(base.federation.directory, id);
  const consents = new ConsentService(ledger, config.id, base.secret, undefined, config.patients.identifierSystem, decisions, member);
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
  engine.on('cancelled', (r) => metrics.exchange('out', 'cancelled', r.bytes));
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
      notify({ event: 'inbox.delivered', item: { ...meta, contentSha256: hexDigest(meta.contentSha256) } }, meta.exchangeId);
    },
    onRefused: (code) => metrics.refused.inc({ code }),
    requirePatientSigned: config.consent.requirePatientSigned,
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
  const prescriptionStore = new PrescriptionStore(state.db);
  const prescriptions = new PrescriptionService({
    self: config.id,
    secret: base.secret,
    identifierSystem: config.patients.identifierSystem,
    store: prescriptionStore,
    peers,
    keys: local,
    send,
    ledger,
    directory: () => base.federation.directory,
    logger: log,
  });
  const claimStore = new ClaimStore(state.db);
  const claims = new ClaimService({
    self: config.id,
    secret: base.secret,
    identifierSystem: config.patients.identifierSystem,
    store: claimStore,
    consents,
    peers,
    keys: local,
    directory: () => base.federation.directory,
    ledger,
    send: (to: string, message: ClaimWireMessage) => {
      try {
        relay.sendMessage(to, encodeClaimWire(message));
      } catch (err) {
        log.debug({ to, t: message.t, err: { message: (err as Error).message } }, 'claim message not sent');
      }
    },
    logger: log,
    // The claims system is told as the EHR is of its inbox (webhook); it reads the claim from GET /v1/claims/ID.
    onIncoming: (claim) =>
      notify({ event: 'claim.received', claim: { id: claim.id, hospital: claim.peer, amount: claim.amount, currency: claim.currency } }, claim.id),
  });
  relay.on('ready', () => void claims.resume().catch((err: Error) => log.warn({ err: { message: err.message } }, 'cannot resume claims')));
  const eligibilityStore = new EligibilityStore(state.db);
  const eligibility = new EligibilityService({
    self: config.id,
    secret: base.secret,
    identifierSystem: config.patients.identifierSystem,
    store: eligibilityStore,
    consents,
    peers,
    keys: local,
    directory: () => base.federation.directory,
    ledger,
    send: (to: string, message: EligibilityWireMessage) => {
      try {
        relay.sendMessage(to, encodeEligibilityWire(message));
      } catch (err) {
        log.debug({ to, t: message.t, err: { message: (err as Error).message } }, 'eligibility message not sent');
      }
    },
    logger: log,
    // As for claims: the claims system is told through the webhook and reads the request from GET /v1/eligibility/ID.
    onIncoming: (request) => notify({ event: 'eligibility.received', request: { id: request.id, hospital: request.peer } }, request.id),
  });
  relay.on('ready', () => void eligibility.resume().catch((err: Error) => log.warn({ err: { message: err.message } }, 'cannot resume eligibility requests')));
  const dispatcher = new MessageDispatcher({
    modules: [claims.wireModule(), eligibility.wireModule()],
    engine,
    receiver,
    requests,
    peers,
    prescriptions,
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
  const validator = timedValidator(fhirValidator(config.limits.fhirValidationThreads, log), metrics);
  log.info({ threads: validator.threads }, 'FHIR Bundles are validated in this many worker threads (0: on the main thread)');
  const exchanges = new ExchangeService({
    validator,
    self: config.id,
    secret: base.secret,
    identifierSystem: config.patients.identifierSystem,
    dicomIssuer: config.patients.dicomIssuer,
    gate: engine.gate,
    store: state.exchanges,
    outbox,
    maxBytes: config.limits.maxExchangeBytes,
    inlineBodyBytes: config.limits.inlineBodyBytes,
    isRevoked: (to) => peers.isRevoked(to),
    member,
    enqueue: (id) => engine.enqueue(id),
    cancel: (id) => engine.cancel(id),
    ...(config.limits.sendWhileUploading ? { live: (x: Parameters<ExchangeEngine['live']>[0]) => engine.live(x) } : {}),
  });
  return { consents, decisions, engine, requests, exchanges, prescriptions, prescriptionStore, claims, claimStore, eligibility, eligibilityStore, validator };
}

/** `validator`, each answer's time observed in `hie_agent_fhir_validation_seconds`, its threads in `hie_agent_fhir_validation_threads`. */
function timedValidator(validator: FhirValidator, metrics: AgentMetrics): FhirValidator {
  metrics.validationThreads = () => validator.threads;
  return {
    get threads() {
      return validator.threads;
    },
    check: async (bytes, patient) => {
      const end = metrics.fhirValidation.startTimer();
      try {
        return await validator.check(bytes, patient);
      } finally {
        end();
      }
    },
    close: () => validator.close(),
  };
}

/** Logs the relay link's state changes and tells the engine and the replicator when it is up. */
function watchRelay(link: Link, engine: ExchangeEngine, standing: SelfStanding, metrics: AgentMetrics, log: Logger): void {
  const { relay, replicator, peers } = link;
  relay.on('ready', () => {
    standing.onRelayReady();
    metrics.relayConnected.set(1);
    log.info({ relay: relay.url }, 'connected to the relay');
    engine.onRelayReady();
    void replicator.announce().catch(() => undefined);
  });
  relay.on('disconnected', (info) => {
    metrics.relayConnected.set(0);
    standing.onRelayRefusal(info.code === CLOSE_CODES.revoked);
    if (standing.revoked) return;
    if (info.reason === RENEWAL_CLOSE_REASON) log.info('reconnecting to the relay with the renewed certificate');
    else log.warn({ code: info.code }, 'relay connection lost; reconnecting');
  });
  relay.on('connectError', (err) => {
    const { status, refusal } = err as typeof err & { status?: number; refusal?: string };
    const known = standing.revoked;
    // A refused certificate is not a network fault: say so in one line the operator can act on (once while revoked).
    if ((status === 401 || status === 403) && !known)
      log.error({ code: err.code, status, reason: refusal }, `the relay refused this agent's certificate: ${err.message}`);
    standing.onRelayRefusal(REVOKED_REFUSAL.test(err.message) || REVOKED_REFUSAL.test(String((err.cause as { code?: unknown } | undefined)?.code ?? '')));
    // A revoked agent said so once (SelfStanding); every refused attempt after that is expected.
    if (known || standing.revoked) log.debug({ code: err.code }, 'relay refused this revoked agent');
    else if (status !== 401 && status !== 403) log.warn({ code: err.code, err: { message: err.message } }, 'cannot connect to the relay; retrying');
  });
  relay.on('undeliverable', (err) => {
    log.debug({ to: err.to, code: err.code }, 'message undeliverable');
    peers.onUndeliverable(err.to);
  });
}

/** A renewed certificate or CA bundle on disk is adopted without a restart: the relay link reconnects with it once idle. */
function watchIdentity(config: AgentConfig, base: Base, link: Link, metrics: AgentMetrics, log: Logger): void {
  base.identityWatcher.on('change', (next, prev) => {
    base.identity = next;
    link.relay.renewIdentity(next);
    // The key bundle names the certificate: re-issue it for the new one, as a restart would (same keys).
    createKeyBundle(next, base.keys).then(
      (bundle) => {
        writeFileAtomic(join(config.dataDir, 'keys', 'bundle.json'), `${JSON.stringify(bundle, null, 2)}\n`, 0o600);
        base.bundle = bundle;
        log.info({ serial: next.serial, expires: bundle.expires }, 'key bundle re-issued for the renewed certificate');
      },
      (err: Error) => log.error({ err: { message: err.message } }, 'cannot re-issue the key bundle for the renewed certificate; it will be at the next start'),
    );
    metrics.certificateReloads.inc({ outcome: 'adopted' });
    log.info(
      { serial: next.serial, notAfter: new Date(next.certificate.validTo).toISOString(), previous: prev.serial, caChanged: next.caPem !== prev.caPem },
      'new agent certificate adopted; the relay connection moves to it once no transfer is in flight',
    );
  });
  base.identityWatcher.on('rejected', (err) => {
    metrics.certificateReloads.inc({ outcome: 'rejected' });
    log.error({ code: err.code, msg: err.message, serial: base.identity.serial }, 'renewed certificate files refused; the certificate in force stays');
  });
  base.identityWatcher.start();
}

/**
 * How the relay (or its TLS layer) says a certificate is revoked: a 403 body (`certificate revoked`, or
 * `client certificate refused: revoked` from a relay that completes the handshake to say why), or OpenSSL's alert.
 */
const REVOKED_REFUSAL = /certificate revoked|certificate refused: revoked|CERTIFICATE_REVOKED/i;

/**
 * For one settlement statement: whether exchange `exchangeId` from `from`
 * answers one of our records requests: the holder named it
 * (`request.status` answered), or, from a holder that does not name its
 * answers, we asked `from` for records at all (read once per statement).
 */
function answersOurRequest(requests: Stores['state']['requests']): (exchangeId: string, from: string) => Promise<boolean> {
  let asked: Promise<Set<string>> | undefined;
  return async (exchangeId, from) => {
    if ((await requests.answeredBy(exchangeId)) !== undefined) return true;
    asked ??= requests.list('outgoing').then((list) => new Set(list.filter((r) => r.status !== 'refused').map((r) => r.peer)));
    return (await asked).has(from);
  };
}

/** The local API (`/v1`, `/healthz`, `/metrics`, the OpenAPI document), listening. */
async function serveApi(
  config: AgentConfig,
  base: Base,
  stores: Stores,
  link: Link,
  x: Exchange,
  standing: SelfStanding,
  metrics: AgentMetrics,
  log: Logger,
  recovered: () => Promise<unknown>,
  patients?: RunningPatients,
): Promise<Server> {
  const { ledger, state, inbox } = stores;
  const { relay, replicator } = link;
  const v1 = express.Router();
  v1.use(consentRoutes(x.consents, config.id, { jsonLimit: DEFAULT_JSON_LIMIT }));
  v1.use(decisionRoutes(x.decisions, config.id));
  v1.use(exchangeRoutes(x.exchanges, state.exchanges, x.requests));
  v1.use(requestRoutes(x.requests, state.requests, { jsonLimit: DEFAULT_JSON_LIMIT }));
  v1.use(prescriptionRoutes(x.prescriptions, x.prescriptionStore, { jsonLimit: DEFAULT_JSON_LIMIT }));
  v1.use(claimRoutes(x.claims, x.claimStore, { jsonLimit: DEFAULT_JSON_LIMIT }));
  v1.use(eligibilityRoutes(x.eligibility, x.eligibilityStore, { jsonLimit: DEFAULT_JSON_LIMIT }));
  v1.use(
    inboxRoutes(inbox, {
      requestOf: (x) => state.requests.answeredBy(x),
      ...(stores.directory ? { onRemoved: (meta: InboxMeta) => stores.directory?.remove(meta) ?? Promise.resolve() } : {}),
    }),
  );
  v1.use(
    ledgerRoutes(ledger, replicator, base.trust, config.id, { witness: link.witness, policy: link.policy, billable: () => answersOurRequest(state.requests) }),
  );
  v1.use(federationRoutes(base.federation, standing, () => base.identity.serial));
  v1.use(patientRoutes(patients, { jsonLimit: DEFAULT_JSON_LIMIT }));
  // The card-signing key is made (and bound to the certificate) only when this agent issues cards.
  const issuerKey = config.certificates.iss ? await loadIssuerKey(join(config.dataDir, 'keys'), base.identity) : undefined;
  const issuer = issuerKey && config.certificates.iss ? new CertificateIssuer({ ledger, key: issuerKey, iss: config.certificates.iss }) : undefined;
  v1.use(certificateRoutes(() => issuer));
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
          crl: () => base.federation.crl,
          replication: () => replicator.status(),
          claims: x.claimStore,
          prescriptions: x.prescriptionStore,
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
    handle: async () => {
      // A revoked agent cannot exchange anything until it has a new certificate: not ok, and why.
      if (standing.revoked) {
        return {
          status: 503,
          body: {
            status: 'error',
            reason: REVOKED_REASON,
            agent: config.id,
            relay: relay.connected ? 'connected' : 'disconnected',
            outbox: await state.exchanges.countUnfinished(),
          },
        };
      }
      // Still 200 when degraded: the agent works; `reasons` says what needs doing before a certificate or the CRL lapses.
      const certs = certificateHealth(base.identity, base.federation.crl);
      return {
        status: 200,
        body: {
          status: certs.status,
          agent: config.id,
          relay: relay.connected ? 'connected' : 'disconnected',
          outbox: await state.exchanges.countUnfinished(),
          ...(certs.reasons.length > 0 ? { reasons: certs.reasons } : {}),
        },
      };
    },
  };
  open.get('/healthz', async (req, res) => {
    const answer = await health.handle(req, '');
    res.status(answer.status).json(answer.body);
  });
  // Browsers ask for /favicon.ico whatever the console's pages name: answered with nothing rather than a 404 error.
  if (consoleApp) open.get('/favicon.ico', (_req, res) => void res.status(204).end());
  open.get('/metrics', async (_req, res) => {
    metrics.outboxQueued.set(await state.exchanges.countUnfinished());
    const certs = certificateHealth(base.identity, base.federation.crl);
    metrics.certExpiry.set(certs.certExpiresInSeconds);
    metrics.caExpiry.set(certs.caExpiresInSeconds);
    if (certs.crlAgeSeconds !== undefined) metrics.crlAge.set(certs.crlAgeSeconds);
    if (certs.crlNextUpdateInSeconds !== undefined) metrics.crlNextUpdate.set(certs.crlNextUpdateInSeconds);
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
    // Writes wait while the agent gets its own feed back from its peers (nothing may be appended before): a short
    // recovery is a short wait, a long one a 503 the client retries.
    hold: () => (ledger.isRecovering ? holdWrite(ledger, recovered()) : undefined),
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
  const metrics = new AgentMetrics();
  const base = await loadBase(config, env, log, metrics);
  const stores = await openStores(config, base, log);
  const link = await linkRelay(config, base, stores.ledger, log);
  const x = buildExchange(config, env, base, stores, link, metrics, log);
  const standing = new SelfStanding(() => base.identity.serial, link.relay, log, metrics.certificateRevoked);
  base.federation.on('crl', (crl) => standing.onCrl(crl));
  standing.onCrl(base.federation.crl);
  watchRelay(link, x.engine, standing, metrics, log);
  watchIdentity(config, base, link, metrics, log);
  // A renewed certificate has a new serial: whether it is revoked is asked again.
  base.identityWatcher.on('change', () => standing.onCrl(base.federation.crl));
  let recoveryDone: Promise<unknown> = Promise.resolve();
  // Patients as a party (docs/patients.md): enrolment, consent requests they sign, their access log, through the relay.
  const patients = config.patients.app.enabled
    ? await startPatients({
        config,
        identity: () => base.identity,
        consents: x.consents,
        ledger: stores.ledger,
        secret: base.secret,
        log,
        validator: x.validator,
      })
    : undefined;
  const server = await serveApi(config, base, stores, link, x, standing, metrics, log, () => recoveryDone, patients);
  const apiPort = (server.address() as AddressInfo).port;

  link.replicator.start();
  const recovery = stores.ledger.isRecovering ? startRecovery(config, stores.ledger, link, log) : undefined;
  void link.relay.connect().catch(() => undefined);
  const resume = async (): Promise<void> => {
    await x.engine.start();
    // Ledger entries of prescription transitions a crash kept from the ledger (the state was written first).
    await x.prescriptions.reconcile().then(
      (n) => void (n > 0 && log.warn({ appended: n }, 'prescription ledger entries restored after a crash')),
      (err: Error) => log.error({ err: { message: err.message } }, 'cannot reconcile prescriptions with the ledger'),
    );
    // Items delivered while the directory was not set, or whose copy a crash or an error cut short.
    const directory = stores.directory;
    if (directory) {
      void directory.catchUp().then(
        (n) => void (n > 0 && log.info({ items: n, dir: directory.dir }, 'inbox items written to the EHR directory at start-up')),
        (err: Error) => log.warn({ err: { message: err.message } }, 'cannot list the inbox for the EHR directory'),
      );
    }
  };
  let recovered: Promise<RecoveryOutcome | undefined>;
  if (recovery) {
    // The engine (whose sends append) starts once the feed is back; the API answers writes 503 meanwhile.
    recovered = recovery.run().then(async (outcome) => {
      if (outcome.state === 'complete' || outcome.state === 'carried-on') await resume();
      return outcome;
    });
    recoveryDone = recovered;
  } else {
    await resume();
    recovered = Promise.resolve(undefined);
  }
  log.info({ api: `${config.api.host}:${apiPort}`, peers: config.peers, recovering: recovery !== undefined }, 'hospital agent started');

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      recovery?.stop();
      x.engine.stop();
      x.prescriptions.stop();
      link.replicator.stop();
      link.stop();
      clearInterval(stores.replayTimer);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await link.relay.close().catch(() => undefined);
      await patients?.close().catch(() => undefined);
      await x.validator.close();
      base.watcher?.stop();
      base.identityWatcher.stop();
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
    consents: x.consents,
    patients,
    relay: link.relay,
    replicator: link.replicator,
    metrics,
    recovered,
    recoveryStatus: () => recovery?.status(),
    reloadCrl: () => base.watcher?.reload() ?? false,
    identity: () => base.identity,
    reloadIdentity: () => base.identityWatcher.reload(),
    federation: base.federation,
    standing,
    close,
  };
}

/** Waits up to RECOVERY_HOLD_MS for the recovery; still recovering, the write gets 503 ERR_RECOVERING. */
async function holdWrite(ledger: Ledger, recovered: Promise<unknown>): Promise<{ error: AgentError; retryAfterSeconds: number } | undefined> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([recovered, new Promise((resolve) => (timer = setTimeout(resolve, RECOVERY_HOLD_MS)))]);
  clearTimeout(timer);
  if (!ledger.isRecovering) return undefined;
  return {
    error: new AgentError('ERR_RECOVERING', 'the agent is getting its ledger feed back from its peers; retry shortly'),
    retryAfterSeconds: RECOVERY_RETRY_AFTER_S,
  };
}

/** Asks the peers for our own feed beyond our head (ledger/recovery.ts), logging each step; asks again whenever the relay link comes up. */
function startRecovery(config: AgentConfig, ledger: Ledger, link: Link, log: Logger): FeedRecovery {
  const recovery = new FeedRecovery(ledger, link.transport, {
    peers: config.peers,
    timeoutMs: config.recovery.timeoutMs,
    minPeers: config.recovery.minPeers,
    maxMessageBytes: DEFAULT_MAX_MESSAGE - 1024,
  });
  const head = ledger.head()?.seq ?? -1;
  log.info({ head, target: ledger.recoveryTarget - 1, peers: config.peers }, 'ledger recovery: asking peers for our own feed beyond our head; appends wait');
  recovery.on('restored', (r: { peer: string; from: number; count: number }) => log.debug(r, 'ledger recovery: entries of our own feed restored from a peer'));
  recovery.on('refused', (r: { peer: string; code: string; reason: string }) =>
    log.error({ peer: r.peer, code: r.code, reason: r.reason }, 'ledger recovery: a peer served our own feed in a form that does not verify; refused'),
  );
  recovery.on('no-head', (r: { peer: string; from: number }) => log.warn(r, 'ledger recovery: a peer holds our feed but no signed head it can serve'));
  recovery.on('timeout', (t: { round: number; answered: string[]; silent: string[]; head: number; target: number; carryingOn: boolean }) =>
    log.error(
      { ...t, minPeers: config.recovery.minPeers, timeoutMs: config.recovery.timeoutMs },
      t.carryingOn
        ? 'ledger recovery: peers silent past the timeout; carrying on (recovery.minPeers is 0)'
        : 'ledger recovery: not enough peers answered in time (or our own checkpoint is beyond what they hold); appends stay held, asking again',
    ),
  );
  recovery.on('error', (err: Error) => log.error({ err: { message: err.message } }, 'ledger recovery: unexpected error'));
  recovery.on('done', (o: RecoveryOutcome) => {
    const line = {
      state: o.state,
      from: o.from,
      head: o.head,
      restored: o.restored,
      rounds: o.rounds,
      answered: o.answered,
      silent: o.silent,
      refused: o.refused.map((r) => r.peer),
    };
    if (o.state === 'complete' || o.state === 'carried-on') log.info(line, 'ledger recovery: done; appends go on');
    else if (o.state === 'failed') log.error({ ...line, reason: o.reason }, 'ledger recovery failed: appends stay held (docs/recovery.md)');
  });
  link.relay.on('ready', () => recovery.kick());
  return recovery;
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
