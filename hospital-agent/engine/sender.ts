import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { PassThrough, Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { sha256Hex, type BodyOf, type Ledger } from '../../ledger/index.ts';
import { backoffDelay, TransferAbortedError, RelayError, type VerifiedUsage } from '../../relay/protocol/index.ts';
import { scopeOf, type Purpose } from '../consent/model.ts';
import {
  BATCH_CONTENT_TYPE,
  receiptSignature,
  sealEnvelope,
  verifyReceipt,
  type BatchItemInput,
  type Receipt,
  type SealStream,
  type SenderKeys,
  type VerifiedReceipt,
} from '../crypto/index.ts';
import { AgentError } from '../errors.ts';
import type { ConsentService } from '../services/consents.ts';
import type { ExchangeRecord, ExchangeStore } from '../store/exchanges.ts';
import type { Outbox } from '../store/outbox.ts';
import { chargesFromUsage } from './payments.ts';
import { PeerKeyUnavailableError, RecipientRevokedError, type PeerDirectory } from './peers.ts';
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
/** Most small exchanges to one recipient sealed into one batch envelope (`limits.maxBatchExchanges`). */
export const DEFAULT_MAX_BATCH = 32;
/** Most body bytes one batch envelope carries. */
export const DEFAULT_MAX_BATCH_BYTES = 1024 * 1024;
/** Queue entries {@link ExchangeEngine.kick} looks at past the point where every send slot is taken. */
const LOOKAHEAD = 256;
/**
 * Batch envelopes in flight to one recipient at most. While they travel,
 * new exchanges for that recipient wait and go together in the next batch:
 * under load batches grow to what arrives in a round trip (fewer envelopes,
 * signatures and transfers per exchange); a lone exchange still goes at once.
 */
export const DEFAULT_BATCHES_PER_RECIPIENT = 1;

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
type FailureReason =
  'timeout' | 'rejected' | 'undeliverable' | 'integrity' | 'consent' | 'cancelled' | 'expired' | 'too-large' | 'unknown-recipient' | 'internal';

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
  /** Sends (single envelopes or batches) in flight at once. */
  maxConcurrent: number;
  /** Most inline exchanges per batch envelope (default {@link DEFAULT_MAX_BATCH}; 1 sends each in its own). */
  maxBatch?: number;
  /** Most body bytes per batch envelope (default {@link DEFAULT_MAX_BATCH_BYTES}). */
  maxBatchBytes?: number;
  /** Batch envelopes in flight to one recipient at most (default {@link DEFAULT_BATCHES_PER_RECIPIENT}). */
  batchesPerRecipient?: number;
  receiptTimeoutMs?: number;
  maxAgeMs?: number;
  retry?: { baseMs: number; maxMs: number };
  now?: () => Date;
}

/** Events of the engine (metrics and tests listen). */
export interface EngineEvents {
  /** A batch envelope is on its way with this many exchanges. */
  batch: [size: number];
  delivered: [record: ExchangeRecord];
  failed: [record: ExchangeRecord];
  retry: [record: ExchangeRecord, error: Error];
}

class Final extends Error {
  constructor(
    readonly reason: FailureReason,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

function b64(hex: string): string {
  return Buffer.from(hex, 'hex').toString('base64url');
}

/**
 * The receipts of one batch envelope as they arrive (or are given up on),
 * and a failed receipt for the batch as a whole.
 */
class BatchReceipts {
  readonly results = new Map<string, unknown>();
  failure: unknown;
  private wake: (() => void) | undefined;

  constructor(private readonly size: number) {}

  get complete(): boolean {
    return this.failure !== undefined || this.results.size >= this.size;
  }

  /** A receipt for `id` (undefined: stop waiting for it); the first answer counts. */
  put(id: string, receipt: unknown): void {
    if (this.results.has(id)) return;
    this.results.set(id, receipt);
    if (this.complete) this.wake?.();
  }

  /** The recipient refused the whole envelope. */
  fail(receipt: unknown): void {
    this.failure ??= receipt;
    this.wake?.();
  }

  /** Resolves when every receipt is in, or after `ms`. */
  wait(ms: number): Promise<void> {
    if (this.complete) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      timer.unref();
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}

/** One receipt to settle, with the header hash it must name (that of the envelope it answers) and the charges to log with it. */
interface Settlement {
  record: ExchangeRecord;
  receipt: unknown;
  headerHash: string | undefined;
  charges?: Array<BodyOf<'payment.charged'>>;
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
  /** Exchanges being worked on (sent, or a late receipt settled). */
  private readonly active = new Set<string>();
  /** Sends in flight: a single envelope or a batch each. */
  private sends = 0;
  /** Exchanges resumed after a restart whose `exchange.sent` is not recorded in the store: the ledger is asked first. */
  private readonly recovered = new Set<string>();
  /** Batch envelopes in flight, by recipient. */
  private readonly batchesTo = new Map<string, number>();
  /** Exchanges waiting to be sent, with the time (ms) they are due. */
  private readonly queue = new Map<string, number>();
  private readonly receiptWaiters = new Map<string, (receipt: unknown) => void>();
  /** Sends whose bytes all left, waiting for the receipt: recipient and a way to stop waiting. */
  private readonly awaitingReceipt = new Map<string, { to: string; giveUp: () => void }>();
  /** Header hash of each exchange's last complete send, until its receipt settles. */
  private readonly sentHeaders = new Map<string, string>();
  /** Usage statements of single transfers that answered a records request, kept until the receipt says whether the release fee is due. */
  private readonly releaseUsage = new Map<string, VerifiedUsage>();
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
      // Its `exchange.sent` may be in the ledger without the store knowing (a crash before the next durable step).
      if (!r.ledger?.sent) this.recovered.add(r.id);
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

  /** Number of sends (single envelopes or batches) in progress. */
  get inFlight(): number {
    return this.sends;
  }

  /** Queues a newly accepted exchange for sending now. */
  enqueue(id: string, dueMs = 0): void {
    if (!this.active.has(id)) this.queue.set(id, dueMs);
    this.kick();
  }

  /**
   * Starts every due exchange the concurrency limit allows, and arms a timer
   * for the next one. Due inline (small) exchanges to one recipient share a
   * send: up to `maxBatch` of them go in one batch envelope. Nothing waits to
   * fill a batch: when a send slot is free, whatever is due goes now, so
   * batches grow only while every slot is busy (under load).
   */
  kick(): void {
    if (this.stopped) return;
    const now = this.now().getTime();
    const maxBatch = this.o.maxBatch ?? DEFAULT_MAX_BATCH;
    const maxBatchBytes = this.o.maxBatchBytes ?? DEFAULT_MAX_BATCH_BYTES;
    let nextDue = Number.POSITIVE_INFINITY;
    const batches = new Map<string, { records: ExchangeRecord[]; bytes: number }>();
    // Once every slot is taken, only the batches started here can still take exchanges: look a bounded way
    // further for them, so a long queue (a relay outage) costs nothing per call.
    let lookahead = 0;
    for (const [id, due] of this.queue) {
      if (this.sends >= this.o.maxConcurrent && (batches.size === 0 || (lookahead += 1) > LOOKAHEAD)) {
        // Not scanned: the timer below must still cover it, so it is due no later than now + the retry cap.
        nextDue = Math.min(nextDue, now + DEFAULT_RETRY_BASE_MS);
        break;
      }
      if (due > now) {
        nextDue = Math.min(nextDue, due);
        continue;
      }
      const record = maxBatch > 1 ? this.o.store.peek(id) : undefined;
      if (record?.inline && record.status === 'queued') {
        const open = batches.get(record.to);
        if (open && open.records.length < maxBatch && open.bytes + record.bytes <= maxBatchBytes) {
          open.records.push(record);
          open.bytes += record.bytes;
          this.queue.delete(id);
          this.active.add(id);
          continue;
        }
        if (open || this.sends >= this.o.maxConcurrent || (this.batchesTo.get(record.to) ?? 0) >= (this.o.batchesPerRecipient ?? DEFAULT_BATCHES_PER_RECIPIENT))
          continue;
        this.sends += 1;
        this.batchesTo.set(record.to, (this.batchesTo.get(record.to) ?? 0) + 1);
        batches.set(record.to, { records: [record], bytes: record.bytes });
        this.queue.delete(id);
        this.active.add(id);
        continue;
      }
      if (this.sends >= this.o.maxConcurrent) continue;
      this.sends += 1;
      this.queue.delete(id);
      this.active.add(id);
      void this.runById(id).finally(() => {
        this.active.delete(id);
        this.sends -= 1;
        this.kick();
      });
    }
    for (const [to, batch] of batches) {
      void this.runBatch(to, batch.records)
        .catch((err: Error) => this.o.logger.error({ err: { message: err.message } }, 'batch send failed unexpectedly'))
        .finally(() => {
          for (const r of batch.records) this.active.delete(r.id);
          this.sends -= 1;
          const left = (this.batchesTo.get(to) ?? 1) - 1;
          if (left > 0) this.batchesTo.set(to, left);
          else this.batchesTo.delete(to);
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
      if (err instanceof Final) {
        await this.handleFailure(record, err);
        return;
      }
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

  /**
   * Re-checks consent at send time and logs the release (exchange.sent) once;
   * returns the new entry's hash. The check and the append are issued in one
   * tick ({@link ConsentService.checkThen}): a revocation lands wholly before
   * (refused here) or after (its entry follows this release's).
   */
  private async release(record: ExchangeRecord): Promise<string | undefined> {
    // Looked up, not yet taken off the recovered list: a consent refused below still leaves handleFailure to find it.
    const logged = await this.loggedSent(record, { keep: true });
    let checked: { result: Promise<{ hash: string }> | undefined };
    try {
      checked = await this.o.consents.checkThen(
        record.consentId,
        {
          patientHash: record.patientHash,
          recipient: record.to,
          purpose: record.purpose as Purpose,
          scope: record.scope ?? scopeOf(record.contentType),
          at: this.now(),
        },
        () =>
          logged
            ? undefined
            : this.o.ledger.append({
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
              }),
      );
    } catch (err) {
      if (err instanceof AgentError) throw new Final('consent', err.code, err.message);
      throw err;
    }
    this.recovered.delete(record.id);
    if (checked.result) return (await checked.result).hash;
    // Logged before: by the store (nothing new to record) or only by the ledger (recovered after a restart).
    return record.ledger?.sent ? undefined : logged;
  }

  /** The hash of this exchange's `exchange.sent` when the ledger has one the store does not know of (a restart came between them). */
  private async loggedSent(record: ExchangeRecord, options: { keep?: boolean } = {}): Promise<string | undefined> {
    if (record.ledger?.sent || !(options.keep ? this.recovered.has(record.id) : this.recovered.delete(record.id))) return record.ledger?.sent;
    return (await this.o.ledger.byExchange(record.id)).find((e) => e.entry.feed === this.o.self && e.entry.type === 'exchange.sent')?.hash;
  }

  /** Streams the envelope of the stored body and resolves with the receipt message. */
  private async transmit(record: ExchangeRecord): Promise<unknown> {
    const bundle = await this.o.peers.encryptionBundle(record.to);
    // The outbox hashed the body as it stored it: the envelope carries that hash, so the recipient refuses a
    // body that changed on disk since, instead of releasing it.
    const known = { sha256: Buffer.from(record.contentSha256, 'hex'), length: record.bytes };
    let source: Readable;
    if (record.inline) {
      const body = await this.o.store.body(record.id);
      if (!body) throw new Final('internal', 'ERR_OUTBOX_MISSING', 'the stored body is missing');
      source = Readable.from([body], { objectMode: false });
    } else source = this.o.outbox.read(record.id);
    return this.awaitReceipt(
      record,
      this.startSend(record, bundle, source, () => known),
    );
  }

  /**
   * Opens the relay transfer and starts sealing `source` into it; the
   * receipt waiter is registered before a byte leaves, so a fast receipt is
   * never missed.
   */
  private startSend(
    x: Pick<ExchangeRecord, 'id' | 'to' | 'contentType' | 'consentId'>,
    bundle: RecipientBundle,
    source: Readable,
    knownContent: () => { sha256: Buffer; length: number },
  ): Send {
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
      transfer.usage.then((u) => this.recordCharges([x.id], u)).catch(() => undefined);
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
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), timeoutMs);
        timer.unref();
      });
      const receipt = await Promise.race([send.receipt, gaveUp, timedOut]);
      clearTimeout(timer);
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
    if (this.stopped || !this.o.relay.connected || this.sends >= this.o.maxConcurrent) return undefined;
    this.active.add(x.id);
    this.sends += 1;
    const release = (): void => {
      this.active.delete(x.id);
      this.sends -= 1;
    };
    let bundle: RecipientBundle;
    try {
      bundle = await this.o.peers.encryptionBundle(x.to);
    } catch {
      release();
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
      release();
      return undefined;
    }
    let failed = false;
    send.sent.catch(() => {
      failed = true;
    });
    let settled = false;
    const done = (): void => {
      release();
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

  /**
   * Logs the charges a transfer's signed usage statement yields for the
   * exchanges it carried (one, or a batch): the transport fee at once, a
   * release fee only for an exchange already delivered (one still waiting for
   * its receipt keeps the statement until it is settled).
   */
  private async recordCharges(exchangeIds: readonly string[], usage: VerifiedUsage, only?: ReadonlySet<string>): Promise<void> {
    const records = (await Promise.all(exchangeIds.map((id) => this.o.store.get(id)))).filter((r): r is ExchangeRecord => r !== undefined);
    if (records.length !== exchangeIds.length) return;
    const delivered = new Set(records.filter((r) => r.status === 'delivered').map((r) => r.id));
    for (const r of records) if (r.requestId && !delivered.has(r.id) && r.status !== 'failed' && exchangeIds.length === 1) this.releaseUsage.set(r.id, usage);
    // Computed over every exchange the transfer carried (its fee goes on the first), whichever of them are logged here.
    const charges = chargesFromUsage(records, usage, delivered);
    const todo = records
      .map((record, i) => ({ record, bodies: (charges[i] ?? []).filter((c) => !record.ledger?.charges?.includes(c.charge)) }))
      .filter((x) => x.bodies.length > 0 && (!only || only.has(x.record.id)));
    if (todo.length === 0) return;
    await Promise.all(todo.flatMap((x) => x.bodies.map((body) => this.o.ledger.append({ type: 'payment.charged', body }))));
    await this.o.store.updateMany(todo.map((x) => ({ id: x.record.id, patch: { ledger: { charges: x.bodies.map((c) => c.charge) } } })));
  }

  /** The release charge of a delivered single-transfer exchange whose usage statement came before its receipt. */
  private releaseCharges(record: ExchangeRecord): Array<BodyOf<'payment.charged'>> {
    const usage = this.releaseUsage.get(record.id);
    if (!usage) return [];
    this.releaseUsage.delete(record.id);
    return (chargesFromUsage([record], usage, new Set([record.id]))[0] ?? []).filter((c) => c.kind === 'release');
  }

  /** Verifies a receipt and finishes the exchange with it; throws what the receipt ended in (retry or final). */
  private async settleReceipt(record: ExchangeRecord, receipt: unknown): Promise<void> {
    const error = (await this.settleReceipts([{ record, receipt, headerHash: this.sentHeaders.get(record.id) ?? record.headerHash }])).get(record.id);
    if (error) throw error;
  }

  /**
   * Verifies receipts and finishes their exchanges: a `receipt` ledger entry
   * each (appended together, so they share a group commit) and one store
   * write for all. Returns, per exchange, the error its receipt ended in: a
   * receipt that does not verify means retry; a mismatching or failed one is
   * final.
   */
  private async settleReceipts(list: readonly Settlement[], charged?: Set<string>): Promise<Map<string, Error>> {
    const errors = new Map<string, Error>();
    const accepted: Array<{ record: ExchangeRecord; r: Receipt; headerHash: string | undefined; charges: Array<BodyOf<'payment.charged'>> }> = [];
    for (const { record, receipt, headerHash, charges = [] } of list) {
      let verified: VerifiedReceipt;
      try {
        verified = await verifyReceipt(receipt, {
          resolveSigner: this.o.peers.signerLookup(),
          expect: { exchangeId: record.id, sender: this.o.self, recipient: record.to },
        });
        // It must be about the envelope sent; a refusal may come before the header was read, and names none (null).
        const named = verified.receipt.headerHash;
        if (headerHash && named !== headerHash && (named !== null || verified.receipt.disposition === 'delivered'))
          throw new Error('receipt headerHash is not the expected one');
      } catch (err) {
        this.o.logger.warn({ exchange: record.id, err: { message: (err as Error).message } }, 'receipt rejected');
        errors.set(record.id, new RelayError('ERR_RELAY_UNDELIVERABLE', 'the receipt did not verify'));
        continue;
      }
      const r = verified.receipt;
      if (r.disposition === 'delivered' && r.contentHash !== b64(record.contentSha256)) {
        errors.set(record.id, new Final('integrity', 'ERR_RECEIPT_MISMATCH', 'the receipt names another content hash'));
        continue;
      }
      // The release fee is due only for records that reached the requester.
      const release = r.disposition === 'delivered' ? this.releaseCharges(record) : [];
      accepted.push({ record, r, headerHash, charges: [...charges.filter((c) => c.kind !== 'release' || r.disposition === 'delivered'), ...release] });
    }
    // Every entry of the batch is appended at once: they share the ledger's group commit.
    const logged = await Promise.all(
      accepted.map(async ({ record, r, charges }) => {
        const current = this.o.store.peek(record.id) ?? (await this.o.store.get(record.id)) ?? record;
        const todo = charges.filter((c) => !current.ledger?.charges?.includes(c.charge));
        const [entry] = await Promise.all([
          current.ledger?.receipt
            ? undefined
            : this.o.ledger.append({
                type: 'receipt',
                body: {
                  exchange: record.id,
                  from: record.to,
                  disposition: r.disposition === 'delivered' ? 'delivered' : 'failed',
                  ...(r.disposition === 'delivered' ? {} : { reason: 'integrity' as const }),
                  hash: r.contentHash ?? b64(record.contentSha256),
                  signature: receiptSignature(r),
                },
              }),
          ...todo.map((body) => this.o.ledger.append({ type: 'payment.charged', body })),
        ]);
        if (charges.length > 0) charged?.add(record.id);
        return { ...(entry ? { receipt: entry.hash } : {}), ...(todo.length > 0 ? { charges: todo.map((c) => c.charge) } : {}) };
      }),
    );
    const delivered = accepted.map((a, i) => ({ ...a, ledger: logged[i] ?? {} })).filter((a) => a.r.disposition === 'delivered');
    const refused = accepted.map((a, i) => ({ ...a, ledger: logged[i] ?? {} })).filter((a) => a.r.disposition !== 'delivered');
    if (delivered.length > 0) {
      const done = await this.o.store.transitionMany(
        delivered.map(({ record, r, headerHash, ledger }) => ({
          id: record.id,
          status: 'delivered' as const,
          patch: { receipt: r, ledger, ...(headerHash ? { headerHash } : {}) },
        })),
      );
      for (const record of done) {
        this.sentHeaders.delete(record.id);
        if (!record.inline) await this.o.outbox.remove(record.id);
        this.o.logger.info({ exchange: record.id, to: record.to, bytes: record.bytes }, 'exchange delivered');
        this.emit('delivered', record);
      }
    }
    if (refused.length > 0) {
      await this.o.store.updateMany(refused.map(({ record, r, ledger }) => ({ id: record.id, patch: { receipt: r, ledger } })));
      for (const { record, r } of refused) {
        const code = typeof r.disposition === 'object' ? r.disposition.failed : 'ERR_EXCHANGE_REJECTED';
        errors.set(record.id, new Final('integrity', code, `the recipient refused the envelope (${code})`));
      }
    }
    return errors;
  }

  /**
   * Sends inline exchanges to one recipient in one batch envelope: each is
   * released (consent re-checked, `exchange.sent` logged once), the bodies
   * are sealed together, and every exchange settles with its own receipt.
   * An exchange whose receipt does not come goes back to the queue alone;
   * a transfer that breaks sends them all back.
   */
  private async runBatch(to: string, initial: readonly ExchangeRecord[]): Promise<void> {
    const started = await this.startAttempts(initial);
    if (started.length === 0) return;
    const ready: ExchangeRecord[] = [];
    const bodies: Buffer[] = [];
    for (const record of started) {
      // The copy the API stored is in memory; one read back from disk (after a restart) is checked against its hash.
      const cached = this.o.store.cachedBody(record.id);
      const body = cached ?? (await this.o.store.body(record.id).catch(() => undefined));
      if (!body || body.length !== record.bytes || (!cached && sha256Hex(body) !== record.contentSha256)) {
        await this.handleFailure(record, new Final('internal', 'ERR_OUTBOX_MISSING', 'the stored body is missing or damaged'));
        continue;
      }
      ready.push(record);
      bodies.push(body);
    }
    if (ready.length === 0) return;
    const batchId = randomUUID();
    const receipts = new BatchReceipts(ready.length);
    let sent: Promise<string> | undefined;
    try {
      const bundle = await this.o.peers.encryptionBundle(to);
      // Waiters first: a fast receipt is never missed.
      for (const r of ready) this.receiptWaiters.set(r.id, (receipt) => receipts.put(r.id, receipt));
      this.receiptWaiters.set(batchId, (receipt) => receipts.fail(receipt));
      const transfer = this.o.relay.openTransfer(to, { meta: encodeTransferMeta(batchId, ready.length) });
      this.emit('batch', ready.length);
      const items: BatchItemInput[] = ready.map((r) => ({
        exchangeId: r.id,
        contentType: r.contentType,
        consentRef: r.consentId,
        length: r.bytes,
        sha256: Buffer.from(r.contentSha256, 'hex'),
      }));
      const seal = sealEnvelope(Readable.from([Buffer.concat(bodies)], { objectMode: false }), {
        exchangeId: batchId,
        sender: this.o.sender(),
        recipients: [bundle],
        contentType: BATCH_CONTENT_TYPE,
        consentRef: null,
        now: this.now(),
        batch: items,
      });
      // The relay's usage statement comes as the last byte is forwarded, before the receipts: its charges are
      // logged and stored with them. One that comes later is recorded on its own.
      let usage: VerifiedUsage | undefined;
      let settled = false;
      transfer.usage.then(
        (u) => {
          if (settled)
            void this.recordCharges(
              ready.map((r) => r.id),
              u,
            ).catch(() => undefined);
          else usage = u;
        },
        () => undefined,
      );
      sent = pipeline(seal, transfer).then(async () => (await seal.summary).headerHash);
      sent.catch(() => undefined);
      const { headerHash, sendError } = await this.collectReceipts(to, ready, receipts, sent);
      settled = true;
      await this.finishBatch(to, ready, receipts, headerHash, sendError, usage);
    } catch (err) {
      await Promise.all(ready.map((r) => this.handleFailure(r, err as Error)));
    } finally {
      for (const r of ready) this.receiptWaiters.delete(r.id);
      this.receiptWaiters.delete(batchId);
    }
  }

  /** Releases each exchange (as {@link startAttempt}) and marks those released `sending` in one store write; the rest fail or retry alone. */
  private async startAttempts(records: readonly ExchangeRecord[]): Promise<ExchangeRecord[]> {
    const released = new Map<string, string | undefined>();
    await Promise.all(
      records.map(async (record) => {
        try {
          if (this.now().getTime() - Date.parse(record.createdAt) > (this.o.maxAgeMs ?? DEFAULT_MAX_EXCHANGE_AGE_MS)) {
            throw new Final('expired', 'ERR_EXCHANGE_EXPIRED', 'the exchange could not be delivered in time');
          }
          released.set(record.id, await this.release(record));
        } catch (err) {
          await this.handleFailure(record, err as Error);
        }
      }),
    );
    const go = records.filter((r) => released.has(r.id));
    if (go.length === 0) return [];
    return this.o.store.transitionMany(
      go.map((r) => {
        const sent = released.get(r.id);
        return { id: r.id, status: 'sending' as const, patch: { attempts: r.attempts + 1, ...(sent ? { ledger: { sent } } : {}) } };
      }),
    );
  }

  /**
   * Waits for a batch to leave, then for its receipts (asking again for
   * missing ones, as for a single send), up to the receipt timeout.
   */
  private async collectReceipts(
    to: string,
    records: readonly ExchangeRecord[],
    receipts: BatchReceipts,
    sent: Promise<string>,
  ): Promise<{ headerHash: string | undefined; sendError: Error | undefined }> {
    let headerHash: string | undefined;
    let sendError: Error | undefined;
    try {
      headerHash = await sent;
      for (const r of records) this.sentHeaders.set(r.id, headerHash);
    } catch (err) {
      sendError = err as Error;
    }
    const waiting = sendError ? [] : records.filter((r) => !receipts.results.has(r.id));
    for (const r of waiting) this.awaitingReceipt.set(r.id, { to, giveUp: () => receipts.put(r.id, undefined) });
    const poll =
      waiting.length > 0
        ? setInterval(() => {
            for (const r of waiting) if (!receipts.results.has(r.id)) this.o.send?.(to, { t: 'receipt.get', id: r.id });
          }, DEFAULT_RECEIPT_POLL_MS)
        : undefined;
    poll?.unref();
    try {
      await receipts.wait(sendError ? 2_000 : (this.o.receiptTimeoutMs ?? DEFAULT_RECEIPT_TIMEOUT_MS));
    } finally {
      if (poll) clearInterval(poll);
      for (const r of waiting) this.awaitingReceipt.delete(r.id);
    }
    return { headerHash, sendError };
  }

  /** Settles what a batch's receipts say; exchanges without a usable receipt go back to the queue (or fail) one by one. */
  private async finishBatch(
    to: string,
    records: readonly ExchangeRecord[],
    receipts: BatchReceipts,
    headerHash: string | undefined,
    sendError: Error | undefined,
    usage: VerifiedUsage | undefined,
  ): Promise<void> {
    // Release fees included: settling drops them for exchanges whose receipt is not 'delivered'.
    const charges = usage ? chargesFromUsage(records, usage, new Set(records.map((r) => r.id))) : [];
    const chargesFor = (record: ExchangeRecord): Array<BodyOf<'payment.charged'>> => charges[records.indexOf(record)] ?? [];
    if (receipts.failure !== undefined) {
      if (usage)
        await this.recordCharges(
          records.map((r) => r.id),
          usage,
        );
      // The recipient refused the envelope as a whole: its signed failed receipt names the batch.
      const code = await this.batchRefusal(to, receipts.failure);
      await Promise.all(
        records.map((r) =>
          this.handleFailure(
            r,
            code
              ? new Final('integrity', code, `the recipient refused the batch envelope (${code})`)
              : new RelayError('ERR_RELAY_UNDELIVERABLE', 'the batch receipt did not verify'),
          ),
        ),
      );
      return;
    }
    const answered = records.filter((r) => receipts.results.get(r.id) !== undefined);
    const charged = new Set<string>();
    const errors = await this.settleReceipts(
      answered.map((record) => ({
        record,
        receipt: receipts.results.get(record.id),
        headerHash: headerHash ?? record.headerHash,
        charges: chargesFor(record),
      })),
      charged,
    );
    // The transfer was carried (and charged) whatever became of the receipts: log the charges of the rest.
    const uncharged = records.filter((r) => !charged.has(r.id) && chargesFor(r).length > 0);
    if (usage && uncharged.length > 0)
      await this.recordCharges(
        records.map((r) => r.id),
        usage,
        new Set(uncharged.map((r) => r.id)),
      );
    await Promise.all(
      records.map((record) => {
        const error =
          receipts.results.get(record.id) === undefined
            ? (sendError ?? new RelayError('ERR_RELAY_UNDELIVERABLE', 'no receipt from the recipient in time'))
            : errors.get(record.id);
        return error ? this.handleFailure(record, error) : undefined;
      }),
    );
  }

  /** The error code of a verified failed receipt for a whole batch, or undefined when it does not verify. */
  private async batchRefusal(to: string, receipt: unknown): Promise<string | undefined> {
    try {
      const verified = await verifyReceipt(receipt, { resolveSigner: this.o.peers.signerLookup(), expect: { sender: this.o.self, recipient: to } });
      const d = verified.receipt.disposition;
      return typeof d === 'object' ? d.failed : undefined;
    } catch (err) {
      this.o.logger.warn({ err: { message: (err as Error).message } }, 'batch receipt rejected');
      return undefined;
    }
  }

  private async handleFailure(record: ExchangeRecord, err: Error): Promise<void> {
    this.sentHeaders.delete(record.id);
    const final = this.classify(err);
    if (final) this.releaseUsage.delete(record.id);
    if (!final) {
      const delay = backoffDelay(record.attempts, this.o.retry ?? { baseMs: DEFAULT_RETRY_BASE_MS, maxMs: DEFAULT_RETRY_MAX_MS }) + 100;
      const due = this.now().getTime() + delay;
      const next = await this.o.store.transition(record.id, 'queued', { nextAttemptAt: new Date(due).toISOString() });
      this.queue.set(record.id, due);
      this.o.logger.info(
        { exchange: record.id, attempt: record.attempts, retryInMs: delay, code: (err as { code?: string }).code ?? err.name },
        'exchange will be retried',
      );
      this.emit('retry', next, err);
      return;
    }
    const current = (await this.o.store.get(record.id)) ?? record;
    let ledgerPatch: NonNullable<ExchangeRecord['ledger']> = {};
    // A release never logged (consent refused at send time) needs no failure entry to balance it.
    const sent = await this.loggedSent(current);
    if (!current.ledger?.failed && sent) {
      const entry = await this.o.ledger.append({ type: 'exchange.failed', body: { exchange: record.id, peer: record.to, reason: final.reason } });
      ledgerPatch = { sent, failed: entry.hash };
    }
    const failed = await this.o.store.transition(record.id, 'failed', { failure: { code: final.code, message: final.message }, ledger: ledgerPatch });
    if (!failed.inline) await this.o.outbox.remove(record.id);
    this.o.logger.warn({ exchange: record.id, to: record.to, code: final.code }, 'exchange failed');
    this.emit('failed', failed);
  }

  /** Final failures; undefined means retry. */
  private classify(err: Error): Final | undefined {
    if (err instanceof Final) return err;
    if (err instanceof PeerKeyUnavailableError) return undefined;
    if (err instanceof RecipientRevokedError) return new Final('unknown-recipient', 'ERR_UNKNOWN_RECIPIENT', err.message);
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
