/**
 * Waiting for receipts: one waiter for single sends and batch envelopes.
 * Waiters are registered before a byte leaves (a fast receipt is never
 * missed); once the envelope is out, the recipient is asked again every poll
 * interval (a receipt sent while the relay was down is lost) until every
 * receipt is in, the recipient says it has none, or the timeout passes.
 */
import type { EngineContext } from './context.ts';

/**
 * The receipts of one envelope as they arrive (or are given up on), and a
 * failed receipt for a batch envelope as a whole.
 */
export class PendingReceipts {
  readonly results = new Map<string, unknown>();
  failure: unknown;
  private wake: (() => void) | undefined;

  constructor(
    /** The exchanges the envelope carries. */
    readonly ids: readonly string[],
    /** The batch id a refusal of the whole envelope names, if it is a batch. */
    readonly batchId: string | undefined,
    private readonly unregister: (pending: PendingReceipts) => void,
  ) {}

  get complete(): boolean {
    return this.failure !== undefined || this.results.size >= this.ids.length;
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

  /** Stops taking receipts for these exchanges (a later one is settled as a late receipt). */
  close(): void {
    this.unregister(this);
  }
}

/** What waiting for an envelope's receipts ended in. */
export interface Collected {
  /** The header hash of the envelope, when it left whole. */
  headerHash: string | undefined;
  /** Why the envelope did not leave whole. */
  sendError: Error | undefined;
}

/** The engine's receipt waiter. */
export class ReceiptWaiter {
  private readonly waiters = new Map<string, (receipt: unknown) => void>();
  /** Sends whose bytes all left, waiting for the receipt: recipient and a way to stop waiting. */
  private readonly awaiting = new Map<string, { to: string; giveUp: () => void }>();

  constructor(private readonly ctx: EngineContext) {}

  /** Registers waiters for the receipts of `ids` (and a refusal naming `batchId`) before the envelope is sent. */
  expect(ids: readonly string[], batchId?: string): PendingReceipts {
    const pending = new PendingReceipts(ids, batchId, (p) => this.unregister(p));
    for (const id of ids) this.waiters.set(id, (receipt) => pending.put(id, receipt));
    if (batchId !== undefined) this.waiters.set(batchId, (receipt) => pending.fail(receipt));
    return pending;
  }

  private unregister(pending: PendingReceipts): void {
    for (const id of pending.ids) this.waiters.delete(id);
    if (pending.batchId !== undefined) this.waiters.delete(pending.batchId);
  }

  /** Hands a receipt to the send waiting for it; false when none is (a late receipt). */
  deliver(exchangeId: string, receipt: unknown): boolean {
    const waiter = this.waiters.get(exchangeId);
    if (!waiter) return false;
    waiter(receipt);
    return true;
  }

  /** The recipient has no receipt for `id`: stop waiting (the exchange is resent). */
  none(from: string, id: string): void {
    const w = this.awaiting.get(id);
    if (w && w.to === from) w.giveUp();
  }

  /** After a reconnect: ask every recipient we are waiting on for its receipt again. */
  askAgain(): void {
    for (const [id, w] of this.awaiting) this.ctx.ports.send?.(w.to, { t: 'receipt.get', id });
  }

  /**
   * Waits for the envelope to leave (recording its header hash for each
   * exchange), then for its receipts, asking again for missing ones, up to
   * the receipt timeout; after a broken send, only briefly (a recipient
   * that already had the exchange answers with its stored receipt).
   */
  async collect(to: string, pending: PendingReceipts, sent: Promise<string>): Promise<Collected> {
    const { settings, ports, sentHeaders } = this.ctx;
    let headerHash: string | undefined;
    let sendError: Error | undefined;
    try {
      headerHash = await sent;
      for (const id of pending.ids) sentHeaders.set(id, headerHash);
    } catch (err) {
      sendError = err as Error;
    }
    const waiting = sendError ? [] : pending.ids.filter((id) => !pending.results.has(id));
    for (const id of waiting) this.awaiting.set(id, { to, giveUp: () => pending.put(id, undefined) });
    const poll =
      waiting.length > 0
        ? setInterval(() => {
            for (const id of waiting) if (!pending.results.has(id)) ports.send?.(to, { t: 'receipt.get', id });
          }, settings.receiptPollMs)
        : undefined;
    poll?.unref();
    try {
      await pending.wait(sendError ? settings.brokenSendReceiptMs : settings.receiptTimeoutMs);
    } finally {
      if (poll) clearInterval(poll);
      for (const id of waiting) this.awaiting.delete(id);
    }
    return { headerHash, sendError };
  }
}
