/**
 * The exchange engine: sends queued exchanges and settles their receipts.
 * It re-checks consent at send time, seals the stored body to the
 * recipient's CA-verified key, streams it through the relay, waits for the
 * signed receipt and writes each step to the ledger exactly once. Transient
 * failures (no route, lost relay, no receipt yet) go back to the queue with
 * backoff; the receiver answers a resend with its stored receipt, so a retry
 * never delivers twice.
 *
 * This file wires the parts, each in its own module: the queue and its
 * scheduler (`queue.ts`), single sends (`single.ts`), sends while uploading
 * (`live.ts`), batch envelopes (`batch.ts`), the receipt waiter
 * (`receipts.ts`), settling receipts (`settle.ts`), charges (`charges.ts`),
 * the consent gate (`release.ts`), a resend its consent refuses (`confirm.ts`) and what a failure means (`failure.ts`,
 * `outcome.ts`).
 */
import { EventEmitter } from 'node:events';
import { Charges } from './charges.ts';
import { ReleasedCheck } from './confirm.ts';
import type { EngineContext, EngineEvents } from './context.ts';
import type { ExchangeRecord } from '../store/exchanges.ts';
import { BatchSend } from './batch.ts';
import { Canceller } from './cancel.ts';
import { NotRetryableError } from './failure.ts';
import { LiveSends, type LiveSend } from './live.ts';
import { resolveEngineOptions, type EngineOptions } from './options.ts';
import { Outcomes } from './outcome.ts';
import { SendQueue } from './queue.ts';
import { ReceiptWaiter } from './receipts.ts';
import { ReleaseGate } from './release.ts';
import { Settler } from './settle.ts';
import { SingleSend, type SendTarget } from './single.ts';

export type { EngineEvents } from './context.ts';
export type { LiveSend } from './live.ts';

/** See the module comment. */
export class ExchangeEngine extends EventEmitter<EngineEvents> {
  /** The consent gate of outgoing exchanges (the API admits submissions through it). */
  readonly gate: ReleaseGate;
  private readonly ctx: EngineContext;
  private readonly queue: SendQueue;
  private readonly receipts: ReceiptWaiter;
  private readonly settler: Settler;
  private readonly outcomes: Outcomes;
  private readonly lives: LiveSends;
  private readonly canceller: Canceller;

  constructor(options: EngineOptions) {
    super();
    const clock = options.now;
    this.ctx = {
      ports: options,
      settings: resolveEngineOptions(options),
      events: this,
      now: () => clock?.() ?? new Date(),
      sentHeaders: new Map(),
    };
    const requeue = (id: string, dueMs: number): void => this.queue.set(id, dueMs);
    this.gate = new ReleaseGate(this.ctx);
    const charges = new Charges(this.ctx);
    this.receipts = new ReceiptWaiter(this.ctx);
    this.settler = new Settler(this.ctx, charges);
    this.outcomes = new Outcomes(this.ctx, this.gate, charges, requeue);
    const released = new ReleasedCheck(this.ctx, { receipts: this.receipts, settler: this.settler, outcomes: this.outcomes });
    const parts = { gate: this.gate, receipts: this.receipts, settler: this.settler, charges, outcomes: this.outcomes, released };
    const single = new SingleSend(this.ctx, parts, requeue);
    const batch = new BatchSend(this.ctx, parts);
    this.queue = new SendQueue(this.ctx, { one: (id) => single.byId(id), batch: (to, records) => batch.run(to, records) });
    this.lives = new LiveSends(this.ctx, this.queue, single, this.settler, this.outcomes);
    this.canceller = new Canceller(this.ctx, this.queue, charges);
  }

  /** Resumes unfinished exchanges after a restart (those caught mid-send go back to the queue) and starts sending. */
  async start(): Promise<void> {
    const { store } = this.ctx.ports;
    for (const r of await store.unfinished()) {
      // Its `exchange.sent` may be in the ledger without the store knowing (a crash before the next durable step).
      if (!r.ledger?.sent) this.gate.recover(r.id);
      if (r.status === 'sending') await store.transition(r.id, 'queued', { nextAttemptAt: this.ctx.now().toISOString() });
      this.queue.set(r.id, r.nextAttemptAt && r.status === 'queued' ? Date.parse(r.nextAttemptAt) : 0);
    }
    this.queue.kick();
  }

  /** Stops starting new sends (running ones finish or fail on their own). */
  stop(): void {
    this.queue.stop();
  }

  /** Number of sends (single envelopes or batches) in progress. */
  get inFlight(): number {
    return this.queue.inFlight;
  }

  /** Queues a newly accepted exchange for sending now. */
  enqueue(id: string, dueMs = 0): void {
    this.queue.enqueue(id, dueMs);
  }

  /** Starts whatever is due (see {@link SendQueue.kick}). */
  kick(): void {
    this.queue.kick();
  }

  /**
   * Cancels an exchange not yet released to its recipient (see `cancel.ts`):
   * the engine never sends it afterwards. Throws ERR_NOT_FOUND, or
   * ERR_CONFLICT with the exchange's state when it is sending, released or final.
   */
  cancel(id: string): Promise<ExchangeRecord> {
    return this.canceller.cancel(id);
  }

  /**
   * Starts sending an exchange while its body is still being uploaded (see
   * `live.ts`); undefined when it cannot start now.
   */
  live(x: SendTarget): Promise<LiveSend | undefined> {
    return this.lives.start(x);
  }

  /**
   * After a reconnect to the relay: a receipt sent while the connection was
   * down is lost, so ask each recipient we are waiting on for it again
   * (it answers with its stored receipt, or `receipt.none` to have us resend).
   */
  onRelayReady(): void {
    this.receipts.askAgain();
    this.queue.kick();
  }

  /** The recipient has no receipt for `id`: stop waiting and resend. */
  onReceiptNone(from: string, id: string): void {
    this.receipts.none(from, id);
  }

  /** Handles a receipt message from `from` (for a send in progress, or one that resumed after a restart). */
  async onReceipt(from: string, receipt: unknown): Promise<void> {
    const exchangeId = (receipt as { exchangeId?: unknown })?.exchangeId;
    if (typeof exchangeId !== 'string' || this.receipts.deliver(exchangeId, receipt)) return;
    const { store, logger } = this.ctx.ports;
    const record = await store.get(exchangeId).catch(() => undefined);
    if (!record || record.to !== from || (record.status !== 'queued' && record.status !== 'sending') || this.queue.isActive(record.id)) return;
    // A receipt for an exchange not being sent right now (e.g. after a restart): settle it directly.
    const due = this.queue.take(record.id);
    try {
      await this.settler.settleOne(record, receipt);
    } catch (err) {
      if (err instanceof NotRetryableError) {
        await this.outcomes.failed(record, err);
        return;
      }
      logger.warn({ exchange: record.id, err: { message: (err as Error).message } }, 'late receipt rejected');
      const latest = await store.get(record.id);
      if (latest?.status === 'queued' || latest?.status === 'sending') this.queue.set(record.id, due ?? 0);
    } finally {
      this.queue.done(record.id);
      this.queue.kick();
    }
  }
}
