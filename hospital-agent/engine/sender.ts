import { EventEmitter } from 'node:events';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Ledger } from '../../ledger/index.ts';
import { backoffDelay, TransferAbortedError, RelayError, type VerifiedUsage } from '../../relay/protocol/index.ts';
import { scopeOf, type Purpose } from '../consent/model.ts';
import { sealEnvelope, verifyReceipt, type SealStream, type SenderKeys, type VerifiedReceipt } from '../crypto/index.ts';
import { AgentError } from '../errors.ts';
import type { ConsentService } from '../services/consents.ts';
import type { ExchangeRecord, ExchangeStore } from '../store/exchanges.ts';
import type { Outbox } from '../store/outbox.ts';
import { chargesFromUsage } from './payments.ts';
import { PeerKeyUnavailableError, type PeerDirectory } from './peers.ts';
import { encodeTransferMeta, type WireMessage } from './wire.ts';

/** How long a sender waits for the recipient's receipt after the last byte. */
export const DEFAULT_RECEIPT_TIMEOUT_MS = 60_000;
/** While waiting for a receipt, ask the recipient for it again this often (a receipt sent while the relay was down is lost). */
export const DEFAULT_RECEIPT_POLL_MS = 5_000;
/** How long an exchange keeps being retried (recipient offline, relay down) before it fails as expired. */
export const DEFAULT_MAX_EXCHANGE_AGE_MS = 24 * 3600_000;
/** Retry backoff: first delay ceiling and cap. */
export const DEFAULT_RETRY_BASE_MS = 500;
/** Longest wait between two attempts. */
export const DEFAULT_RETRY_MAX_MS = 60_000;

/** What the engine needs from the relay connection. */
export interface RelayPort {
  openTransfer(to: string, options: { meta?: Uint8Array }): Writable & { usage: Promise<VerifiedUsage> };
  /** Whether the relay connection is up (a live send starts only then). */
  readonly connected: boolean;
}

/** The recipient's CA-verified encryption key bundle. */
type RecipientBundle = Awaited<ReturnType<PeerDirectory['encryptionBundle']>>;

/** A send in progress: the sealer, the transfer's outcome (the header hash) and the receipt when it comes. */
interface Send {
  seal: SealStream;
  sent: Promise<string>;
  receipt: Promise<unknown>;
}

/** A send started while the body is still being uploaded ({@link ExchangeEngine.live}). */
export interface LiveSend {
  /** The upload writes every stored byte here too; it never ends it (the engine does, after `commit`). */
  readonly input: Writable;
  /** The body is stored and the exchange recorded: finish the send (from the outbox if the live one broke). */
  commit(record: ExchangeRecord): void;
  /** The upload failed, or an idempotent retry matched an earlier exchange: abort the send. */
  abandon(): void;
}

/** Ledger failure reasons (enumerated, no free text). */
type FailureReason = 'timeout' | 'rejected' | 'undeliverable' | 'integrity' | 'consent' | 'cancelled' | 'expired' | 'too-large' | 'unknown-recipient' | 'internal';

/** Minimal logger (pino-compatible). */
export interface EngineLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** Options of {@link ExchangeEngine}. */
export interface EngineOptions {
  self: string;
  store: ExchangeStore;
  outbox: Outbox;
  consents: ConsentService;
  peers: PeerDirectory;
  ledger: Ledger;
  relay: RelayPort;
  /** Sends a small agent message (to ask for a receipt again after a reconnect). */
  send?: (to: string, message: WireMessage) => void;
  sender: () => SenderKeys;
  logger: EngineLogger;
  maxConcurrent: number;
  receiptTimeoutMs?: number;
  maxAgeMs?: number;
  retry?: { baseMs: number; maxMs: number };
  now?: () => Date;
}

/** Events of the engine (metrics and tests listen). */
export interface EngineEvents {
  delivered: [record: ExchangeRecord];
  failed: [record: ExchangeRecord];
  retry: [record: ExchangeRecord, error: Error];
}

class Final extends Error {
  constructor(readonly reason: FailureReason, readonly code: string, message: string) {
    super(message);
  }
}

function b64(hex: string): string {
  return Buffer.from(hex, 'hex').toString('base64url');
}

/**
 * Sends queued exchanges: re-checks consent, seals the stored body to the
 * recipient's CA-verified key, streams it through the relay, waits for the
 * signed receipt and writes each step to the ledger exactly once. Transient
 * failures (no route, lost relay, no receipt yet) go back to the queue with
 * backoff; the receiver answers a resend with its stored receipt, so a retry
 * never delivers twice.
 */
export class ExchangeEngine extends EventEmitter<EngineEvents> {
  private readonly active = new Set<string>();
  /** Exchanges waiting to be sent, with the time (ms) they are due. */
  private readonly queue = new Map<string, number>();
  private readonly receiptWaiters = new Map<string, (receipt: unknown) => void>();
  /** Sends whose bytes all left, waiting for the receipt: recipient and a way to stop waiting. */
  private readonly awaitingReceipt = new Map<string, { to: string; giveUp: () => void }>();
  /** Header hash of each exchange's last complete send, until its receipt settles. */
  private readonly sentHeaders = new Map<string, string>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly o: EngineOptions) {
    super();
  }

  private now(): Date {
    return this.o.now?.() ?? new Date();
  }

  /** Resumes unfinished exchanges after a restart (those caught mid-send go back to the queue) and starts sending. */
  async start(): Promise<void> {
    for (const r of await this.o.store.unfinished()) {
      if (r.status === 'sending') await this.o.store.transition(r.id, 'queued', { nextAttemptAt: this.now().toISOString() });
      this.queue.set(r.id, r.nextAttemptAt && r.status === 'queued' ? Date.parse(r.nextAttemptAt) : 0);
    }
    this.kick();
  }

  /** Stops starting new sends (running ones finish or fail on their own). */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  /** Number of sends in progress. */
  get inFlight(): number {
    return this.active.size;
  }

  /** Queues a newly accepted exchange for sending now. */
  enqueue(id: string, dueMs = 0): void {
    if (!this.active.has(id)) this.queue.set(id, dueMs);
    this.kick();
  }

  /** Starts every due exchange the concurrency limit allows, and arms a timer for the next one. */
  kick(): void {
    if (this.stopped) return;
    const now = this.now().getTime();
    let nextDue = Number.POSITIVE_INFINITY;
    for (const [id, due] of this.queue) {
      if (this.active.size >= this.o.maxConcurrent) break;
      if (due > now) {
        nextDue = Math.min(nextDue, due);
        continue;
      }
      this.queue.delete(id);
      this.active.add(id);
      void this.runById(id).finally(() => {
        this.active.delete(id);
        this.kick();
      });
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (Number.isFinite(nextDue)) {
      this.timer = setTimeout(() => this.kick(), Math.max(10, nextDue - now));
      this.timer.unref();
    }
  }

  private async runById(id: string): Promise<void> {
    try {
      const record = await this.o.store.get(id);
      if (record && record.status === 'queued') await this.run(record);
    } catch (err) {
      this.o.logger.error({ exchange: id, err: { message: (err as Error).message } }, 'send failed unexpectedly');
      this.queue.set(id, this.now().getTime() + DEFAULT_RETRY_MAX_MS);
    }
  }

  /**
   * After a reconnect to the relay: a receipt sent while the connection was
   * down is lost, so ask each recipient we are waiting on for it again
   * (it answers with its stored receipt, or `receipt.none` to have us resend).
   */
  onRelayReady(): void {
    for (const [id, w] of this.awaitingReceipt) this.o.send?.(w.to, { t: 'receipt.get', id });
    this.kick();
  }

  /** The recipient has no receipt for `id`: stop waiting and resend. */
  onReceiptNone(from: string, id: string): void {
    const w = this.awaitingReceipt.get(id);
    if (w && w.to === from) w.giveUp();
  }

  /** Handles a receipt message from `from` (for a send in progress, or one that resumed after a restart). */
  async onReceipt(from: string, receipt: unknown): Promise<void> {
    const exchangeId = (receipt as { exchangeId?: unknown })?.exchangeId;
    if (typeof exchangeId !== 'string') return;
    const waiter = this.receiptWaiters.get(exchangeId);
    if (waiter) {
      waiter(receipt);
      return;
    }
    const record = await this.o.store.get(exchangeId).catch(() => undefined);
    if (!record || record.to !== from || (record.status !== 'queued' && record.status !== 'sending') || this.active.has(record.id)) return;
    // A receipt for an exchange not being sent right now (e.g. after a restart): settle it directly.
    const due = this.queue.get(record.id);
    this.queue.delete(record.id);
    this.active.add(record.id);
    try {
      await this.settleReceipt(record, receipt);
    } catch (err) {
      this.o.logger.warn({ exchange: record.id, err: { message: (err as Error).message } }, 'late receipt rejected');
      const latest = await this.o.store.get(record.id);
      if (latest?.status === 'queued' || latest?.status === 'sending') this.queue.set(record.id, due ?? 0);
    } finally {
      this.active.delete(record.id);
      this.kick();
    }
  }

  private async run(initial: ExchangeRecord): Promise<void> {
    let record = initial;
    try {
      if (this.now().getTime() - Date.parse(record.createdAt) > (this.o.maxAgeMs ?? DEFAULT_MAX_EXCHANGE_AGE_MS)) {
        throw new Final('expired', 'ERR_EXCHANGE_EXPIRED', 'the exchange could not be delivered in time');
      }
      record = await this.startAttempt(record);
      const receipt = await this.transmit(record);
      await this.settleReceipt(record, receipt);
    } catch (err) {
      await this.handleFailure(record, err as Error);
    }
  }

  /** Releases the exchange (consent re-checked, exchange.sent logged once) and marks it sending, in one store write. */
  private async startAttempt(record: ExchangeRecord): Promise<ExchangeRecord> {
    const sent = await this.release(record);
    return this.o.store.transition(record.id, 'sending', { attempts: record.attempts + 1, ...(sent ? { ledger: { sent } } : {}) });
  }

  /** Re-checks consent at send time and logs the release (exchange.sent) once; returns the new entry's hash. */
  private async release(record: ExchangeRecord): Promise<string | undefined> {
    try {
      await this.o.consents.check(record.consentId, {
        patientHash: record.patientHash,
        recipient: record.to,
        purpose: record.purpose as Purpose,
        scope: record.scope ?? scopeOf(record.contentType),
        at: this.now(),
      });
    } catch (err) {
      if (err instanceof AgentError) throw new Final('consent', err.code, err.message);
      throw err;
    }
    if (record.ledger?.sent) return undefined;
    const sent = await this.o.ledger.append({
      type: 'exchange.sent',
      body: {
        exchange: record.id,
        to: record.to,
        consent: record.consentId,
        patient: record.patientHash,
        purpose: record.purpose as Purpose,
        contentType: record.contentType.split(';')[0]?.trim().toLowerCase() ?? 'application/octet-stream',
        bytes: record.bytes,
        hash: b64(record.contentSha256),
      },
    });
    return sent.hash;
  }

  /** Streams the envelope of the stored body and resolves with the receipt message. */
  private async transmit(record: ExchangeRecord): Promise<unknown> {
    const bundle = await this.o.peers.encryptionBundle(record.to);
    // The outbox hashed the body as it stored it: the envelope carries that hash, so the recipient refuses a
    // body that changed on disk since, instead of releasing it.
    const known = { sha256: Buffer.from(record.contentSha256, 'hex'), length: record.bytes };
    return this.awaitReceipt(record, this.startSend(record, bundle, this.o.outbox.read(record.id), () => known));
  }

  /**
   * Opens the relay transfer and starts sealing `source` into it; the
   * receipt waiter is registered before a byte leaves, so a fast receipt is
   * never missed.
   */
  private startSend(x: Pick<ExchangeRecord, 'id' | 'to' | 'contentType' | 'consentId'>, bundle: RecipientBundle, source: Readable, knownContent: () => { sha256: Buffer; length: number }): Send {
    let onReceipt!: (r: unknown) => void;
    const receipt = new Promise<unknown>((resolve) => {
      onReceipt = resolve;
    });
    this.receiptWaiters.set(x.id, onReceipt);
    const transfer = this.o.relay.openTransfer(x.to, { meta: encodeTransferMeta(x.id) });
    const seal = sealEnvelope(source, {
      exchangeId: x.id,
      sender: this.o.sender(),
      recipients: [bundle],
      contentType: x.contentType,
      consentRef: x.consentId,
      now: this.now(),
      knownContent,
    });
    const sent = pipeline(seal, transfer).then(async () => {
      transfer.usage.then((u) => this.recordCharge(x.id, u)).catch(() => undefined);
      return (await seal.summary).headerHash;
    });
    sent.catch(() => undefined);
    return { seal, sent, receipt };
  }

  /** Waits for the envelope to leave, then for the recipient's receipt (asking again while it is missing). */
  private async awaitReceipt(record: ExchangeRecord, send: Send): Promise<unknown> {
    try {
      let sendError: Error | undefined;
      try {
        // Kept until the receipt settles (and stored with it): the receipt must name this header.
        this.sentHeaders.set(record.id, await send.sent);
      } catch (err) {
        sendError = err as Error;
      }
      const timeoutMs = sendError ? 2_000 : (this.o.receiptTimeoutMs ?? DEFAULT_RECEIPT_TIMEOUT_MS);
      // A recipient that already has this exchange answers with its stored receipt and refuses the bytes.
      let giveUp!: () => void;
      const gaveUp = new Promise<undefined>((resolve) => {
        giveUp = () => resolve(undefined);
      });
      let poll: NodeJS.Timeout | undefined;
      if (!sendError) {
        this.awaitingReceipt.set(record.id, { to: record.to, giveUp });
        poll = setInterval(() => this.o.send?.(record.to, { t: 'receipt.get', id: record.id }), DEFAULT_RECEIPT_POLL_MS);
        poll.unref();
      }
      const receipt = await Promise.race([send.receipt, gaveUp, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), timeoutMs).unref())]);
      if (poll) clearInterval(poll);
      this.awaitingReceipt.delete(record.id);
      if (receipt !== undefined) return receipt;
      if (sendError) throw sendError;
      throw new RelayError('ERR_RELAY_UNDELIVERABLE', 'no receipt from the recipient in time');
    } finally {
      this.receiptWaiters.delete(record.id);
    }
  }

  /**
   * Starts sending an exchange while its body is still being uploaded, so
   * the upload and the send overlap (see ExchangeService). The upload writes
   * every byte it stores to `input` too; the envelope's last chunk and signed
   * trailer, without which the recipient releases nothing, are written only
   * after `commit()`, once the body is on disk, the exchange is recorded and
   * `exchange.sent` is in the ledger. Returns undefined when the send cannot
   * start now (relay down, no free send slot, recipient key unknown): the
   * exchange then goes through the queue as usual.
   */
  async live(x: Pick<ExchangeRecord, 'id' | 'to' | 'contentType' | 'consentId'>): Promise<LiveSend | undefined> {
    if (this.stopped || !this.o.relay.connected || this.active.size >= this.o.maxConcurrent) return undefined;
    this.active.add(x.id);
    let bundle: RecipientBundle;
    try {
      bundle = await this.o.peers.encryptionBundle(x.to);
    } catch {
      this.active.delete(x.id);
      return undefined;
    }
    const input = new PassThrough({ highWaterMark: 4 * 1024 * 1024 });
    // The upload hashes the body as it stores it; the sealer uses that hash once the record exists.
    let known: { sha256: Buffer; length: number } | undefined;
    const knownContent = (): { sha256: Buffer; length: number } => {
      if (!known) throw new Error('the live send ended before its exchange was recorded');
      return known;
    };
    let send: Send;
    try {
      send = this.startSend(x, bundle, input, knownContent);
    } catch {
      this.active.delete(x.id);
      return undefined;
    }
    let failed = false;
    send.sent.catch(() => {
      failed = true;
    });
    let settled = false;
    const done = (): void => {
      this.active.delete(x.id);
      this.kick();
    };
    return {
      input,
      commit: (record) => {
        if (settled) return;
        settled = true;
        if (failed) {
          // The live send broke (e.g. the relay went away) while the body was still arriving: count the
          // attempt and send the stored body through the queue.
          this.receiptWaiters.delete(x.id);
          void this.o.store
            .update(record.id, { attempts: record.attempts + 1 })
            .catch((err: Error) => this.o.logger.warn({ exchange: record.id, err: { message: err.message } }, 'cannot count a failed live send'))
            .finally(() => {
              done();
              this.enqueue(record.id);
            });
          return;
        }
        known = { sha256: Buffer.from(record.contentSha256, 'hex'), length: record.bytes };
        void this.runLive(record, input, send).finally(done);
      },
      abandon: () => {
        if (settled) return;
        settled = true;
        this.receiptWaiters.delete(x.id);
        send.seal.destroy(new TransferAbortedError('cancelled', 'the upload did not complete', true));
        done();
      },
    };
  }

  private async runLive(created: ExchangeRecord, input: PassThrough, send: Send): Promise<void> {
    let record = created;
    try {
      record = await this.startAttempt(created);
      // The body is durable and its release logged: let the sealer write the last chunk and the trailer.
      input.end();
      const receipt = await this.awaitReceipt(record, send);
      await this.settleReceipt(record, receipt);
    } catch (err) {
      send.seal.destroy(err as Error);
      this.receiptWaiters.delete(record.id);
      await this.handleFailure(record, err as Error);
    }
  }

  private async recordCharge(exchangeId: string, usage: VerifiedUsage): Promise<void> {
    const record = await this.o.store.get(exchangeId);
    if (!record) return;
    const charges = chargesFromUsage(record, usage).filter((c) => !record.ledger?.charges?.includes(c.charge));
    if (charges.length === 0) return;
    await Promise.all(charges.map((body) => this.o.ledger.append({ type: 'payment.charged', body })));
    await this.o.store.update(exchangeId, { ledger: { charges: charges.map((c) => c.charge) } });
  }

  /** Verifies a receipt and finishes the exchange with it. */
  private async settleReceipt(record: ExchangeRecord, receipt: unknown): Promise<void> {
    const headerHash = this.sentHeaders.get(record.id) ?? record.headerHash;
    let verified: VerifiedReceipt;
    try {
      verified = await verifyReceipt(receipt, {
        resolveSigner: this.o.peers.signerLookup(),
        expect: {
          exchangeId: record.id,
          sender: this.o.self,
          recipient: record.to,
          ...(headerHash ? { headerHash } : {}),
        },
      });
    } catch (err) {
      this.o.logger.warn({ exchange: record.id, err: { message: (err as Error).message } }, 'receipt rejected');
      throw new RelayError('ERR_RELAY_UNDELIVERABLE', 'the receipt did not verify');
    }
    const r = verified.receipt;
    if (r.disposition === 'delivered' && r.contentHash !== b64(record.contentSha256)) {
      throw new Final('integrity', 'ERR_RECEIPT_MISMATCH', 'the receipt names another content hash');
    }
    const current = (await this.o.store.get(record.id)) ?? record;
    let ledgerPatch: NonNullable<ExchangeRecord['ledger']> = {};
    if (!current.ledger?.receipt) {
      const entry = await this.o.ledger.append({
        type: 'receipt',
        body: {
          exchange: record.id,
          from: record.to,
          disposition: r.disposition === 'delivered' ? 'delivered' : 'failed',
          ...(r.disposition === 'delivered' ? {} : { reason: 'integrity' as const }),
          hash: r.contentHash ?? b64(record.contentSha256),
          signature: r.sig,
        },
      });
      ledgerPatch = { receipt: entry.hash };
    }
    if (r.disposition === 'delivered') {
      const done = await this.o.store.transition(record.id, 'delivered', { receipt: r, ledger: ledgerPatch, ...(headerHash ? { headerHash } : {}) });
      this.sentHeaders.delete(record.id);
      await this.o.outbox.remove(record.id);
      this.o.logger.info({ exchange: record.id, to: record.to, bytes: record.bytes }, 'exchange delivered');
      this.emit('delivered', done);
      return;
    }
    await this.o.store.update(record.id, { receipt: r, ledger: ledgerPatch });
    throw new Final('integrity', r.disposition.failed, `the recipient refused the envelope (${r.disposition.failed})`);
  }

  private async handleFailure(record: ExchangeRecord, err: Error): Promise<void> {
    this.sentHeaders.delete(record.id);
    const final = this.classify(err);
    if (!final) {
      const delay = backoffDelay(record.attempts, this.o.retry ?? { baseMs: DEFAULT_RETRY_BASE_MS, maxMs: DEFAULT_RETRY_MAX_MS }) + 100;
      const due = this.now().getTime() + delay;
      const next = await this.o.store.transition(record.id, 'queued', { nextAttemptAt: new Date(due).toISOString() });
      this.queue.set(record.id, due);
      this.o.logger.info({ exchange: record.id, attempt: record.attempts, retryInMs: delay, code: (err as { code?: string }).code ?? err.name }, 'exchange will be retried');
      this.emit('retry', next, err);
      return;
    }
    const current = (await this.o.store.get(record.id)) ?? record;
    let ledgerPatch: NonNullable<ExchangeRecord['ledger']> = {};
    // A release never logged (consent refused at send time) needs no failure entry to balance it.
    if (!current.ledger?.failed && current.ledger?.sent) {
      const entry = await this.o.ledger.append({ type: 'exchange.failed', body: { exchange: record.id, peer: record.to, reason: final.reason } });
      ledgerPatch = { failed: entry.hash };
    }
    const failed = await this.o.store.transition(record.id, 'failed', { failure: { code: final.code, message: final.message }, ledger: ledgerPatch });
    await this.o.outbox.remove(record.id);
    this.o.logger.warn({ exchange: record.id, to: record.to, code: final.code }, 'exchange failed');
    this.emit('failed', failed);
  }

  /** Final failures; undefined means retry. */
  private classify(err: Error): Final | undefined {
    if (err instanceof Final) return err;
    if (err instanceof PeerKeyUnavailableError) return undefined;
    if (err instanceof TransferAbortedError) {
      if (err.reason === 'rejected' || err.reason === 'protocol-error') return new Final('rejected', 'ERR_EXCHANGE_REJECTED', err.message);
      return undefined;
    }
    if (err instanceof RelayError) return undefined;
    const code = (err as { code?: string }).code;
    if (typeof code === 'string' && code.startsWith('ERR_ENVELOPE')) return new Final('internal', code, err.message);
    if (code === 'ENOENT') return new Final('internal', 'ERR_OUTBOX_MISSING', 'the stored body is missing');
    return undefined;
  }
}
