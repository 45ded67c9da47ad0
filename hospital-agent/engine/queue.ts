/**
 * The send queue and its scheduler: which exchanges are due, how many sends
 * run at once, and which small exchanges to one recipient share a batch
 * envelope. It starts sends through the callbacks it is given and knows
 * nothing of envelopes or receipts.
 */
import type { ExchangeRecord } from '../store/exchanges.ts';
import type { EngineContext } from './context.ts';
import { DEFAULT_RETRY_BASE_MS } from './options.ts';

/** Queue entries {@link SendQueue.kick} looks at past the point where every send slot is taken. */
const LOOKAHEAD = 256;

/** How the queue starts sends. */
export interface SendStarters {
  /** Sends one exchange (by id; it is read from the store). */
  one(id: string): Promise<void>;
  /** Sends inline exchanges to one recipient in one batch envelope. */
  batch(to: string, records: readonly ExchangeRecord[]): Promise<void>;
}

/** See the module comment. */
export class SendQueue {
  /** Exchanges being worked on (sent, or a late receipt settled). */
  private readonly active = new Set<string>();
  /** Sends in flight: a single envelope or a batch each. */
  private sends = 0;
  /** Batch envelopes in flight, by recipient. */
  private readonly batchesTo = new Map<string, number>();
  /** Exchanges waiting to be sent, with the time (ms) they are due. */
  private readonly queue = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly ctx: EngineContext,
    private readonly start: SendStarters,
  ) {}

  /** Number of sends (single envelopes or batches) in progress. */
  get inFlight(): number {
    return this.sends;
  }

  /** Stops starting new sends. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  get isStopped(): boolean {
    return this.stopped;
  }

  /** Queues an exchange, due at `dueMs` (0: now), unless it is being worked on. */
  enqueue(id: string, dueMs = 0): void {
    if (!this.active.has(id)) this.queue.set(id, dueMs);
    this.kick();
  }

  /** Puts an exchange (back) on the queue without waking the scheduler. */
  set(id: string, dueMs: number): void {
    this.queue.set(id, dueMs);
  }

  /** Whether the exchange is being worked on now. */
  isActive(id: string): boolean {
    return this.active.has(id);
  }

  /**
   * Takes the exchange off the queue to work on it outside a send (a late
   * receipt); returns when it was due, to put it back if that fails.
   */
  take(id: string): number | undefined {
    const due = this.queue.get(id);
    this.queue.delete(id);
    this.active.add(id);
    return due;
  }

  /** The work on an exchange taken with {@link take} is over. */
  done(id: string): void {
    this.active.delete(id);
  }

  /** Takes a send slot for an exchange sent outside the queue (a live send); false when none is free. */
  takeSlot(id: string): boolean {
    if (this.stopped || this.sends >= this.ctx.settings.maxConcurrent) return false;
    this.active.add(id);
    this.sends += 1;
    return true;
  }

  /** Gives back a slot taken with {@link takeSlot}. */
  releaseSlot(id: string): void {
    this.active.delete(id);
    this.sends -= 1;
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
    const { settings, ports } = this.ctx;
    const now = this.ctx.now().getTime();
    let nextDue = Number.POSITIVE_INFINITY;
    const batches = new Map<string, { records: ExchangeRecord[]; bytes: number }>();
    // Once every slot is taken, only the batches started here can still take exchanges: look a bounded way
    // further for them, so a long queue (a relay outage) costs nothing per call.
    let lookahead = 0;
    for (const [id, due] of this.queue) {
      if (this.sends >= settings.maxConcurrent && (batches.size === 0 || (lookahead += 1) > LOOKAHEAD)) {
        // Not scanned: the timer below must still cover it, so it is looked at again soon.
        nextDue = Math.min(nextDue, now + DEFAULT_RETRY_BASE_MS);
        break;
      }
      if (due > now) {
        nextDue = Math.min(nextDue, due);
        continue;
      }
      const record = settings.maxBatch > 1 ? ports.store.peek(id) : undefined;
      if (record?.inline && record.status === 'queued') this.addToBatch(batches, id, record);
      else if (this.sends < settings.maxConcurrent) this.startOne(id);
    }
    for (const [to, batch] of batches) this.startBatch(to, batch.records);
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (Number.isFinite(nextDue)) {
      this.timer = setTimeout(() => this.kick(), Math.max(10, nextDue - now));
      this.timer.unref();
    }
  }

  /** Adds a due inline exchange to its recipient's batch of this round, opening one when a slot allows. */
  private addToBatch(batches: Map<string, { records: ExchangeRecord[]; bytes: number }>, id: string, record: ExchangeRecord): void {
    const { settings } = this.ctx;
    const open = batches.get(record.to);
    if (open && open.records.length < settings.maxBatch && open.bytes + record.bytes <= settings.maxBatchBytes) {
      open.records.push(record);
      open.bytes += record.bytes;
    } else {
      if (open || this.sends >= settings.maxConcurrent || (this.batchesTo.get(record.to) ?? 0) >= settings.batchesPerRecipient) return;
      this.sends += 1;
      this.batchesTo.set(record.to, (this.batchesTo.get(record.to) ?? 0) + 1);
      batches.set(record.to, { records: [record], bytes: record.bytes });
    }
    this.queue.delete(id);
    this.active.add(id);
  }

  private startOne(id: string): void {
    this.sends += 1;
    this.queue.delete(id);
    this.active.add(id);
    void this.start.one(id).finally(() => {
      this.active.delete(id);
      this.sends -= 1;
      this.kick();
    });
  }

  private startBatch(to: string, records: readonly ExchangeRecord[]): void {
    void this.start
      .batch(to, records)
      .catch((err: Error) => this.ctx.ports.logger.error({ err: { message: err.message } }, 'batch send failed unexpectedly'))
      .finally(() => {
        for (const r of records) this.active.delete(r.id);
        this.sends -= 1;
        const left = (this.batchesTo.get(to) ?? 1) - 1;
        if (left > 0) this.batchesTo.set(to, left);
        else this.batchesTo.delete(to);
        this.kick();
      });
  }
}
