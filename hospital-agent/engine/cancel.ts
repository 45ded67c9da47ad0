/**
 * Cancelling an outgoing exchange before it is released to its recipient
 * (`DELETE /v1/exchanges/ID`). The exchange is taken off the send queue in
 * the same tick as it is checked, the way the queue itself takes an
 * exchange to send it (JavaScript runs one tick at a time), so the engine
 * can never start a send of an exchange being cancelled, nor a cancel take
 * one the engine is sending. An `exchange.cancelled` ledger entry records
 * the cancel; the exchange ends `failed` with code ERR_EXCHANGE_CANCELLED
 * and its stored body is dropped.
 *
 * An exchange the engine is working on when the cancel comes (an attempt
 * the relay refused still waits briefly for a receipt, in case an earlier
 * attempt reached the recipient) is waited for, up to that brief wait and a
 * second, and then judged. Refused (409 ERR_CONFLICT, with the exchange's
 * state) when the exchange is final, is still being sent, or its envelope
 * already left whole (the recipient may hold it: only its receipt is missing).
 */
import { AgentError } from '../errors.ts';
import type { ExchangeRecord } from '../store/exchanges.ts';
import type { Charges } from './charges.ts';
import type { EngineContext } from './context.ts';
import type { SendQueue } from './queue.ts';

/** How long past the engine's post-attempt receipt wait a cancel waits for an attempt in progress to end. */
const CANCEL_WAIT_EXTRA_MS = 1_000;
/** How often it looks. */
const CANCEL_POLL_MS = 50;

/** The failure code of a cancelled exchange. */
export const CANCELLED_CODE = 'ERR_EXCHANGE_CANCELLED';

/** See the module comment. */
export class Canceller {
  constructor(
    private readonly ctx: EngineContext,
    private readonly queue: SendQueue,
    private readonly charges: Charges,
  ) {}

  /** Cancels exchange `id`; resolves with the cancelled record, or throws ERR_NOT_FOUND / ERR_CONFLICT. */
  async cancel(id: string): Promise<ExchangeRecord> {
    const { store, ledger, outbox, logger } = this.ctx.ports;
    let record = await store.get(id);
    if (!record) throw new AgentError('ERR_NOT_FOUND', 'no such exchange');
    const until = Date.now() + this.ctx.settings.brokenSendReceiptMs + CANCEL_WAIT_EXTRA_MS;
    while (this.queue.isActive(id) && (record.status === 'queued' || record.status === 'sending') && Date.now() < until) {
      await new Promise((r) => setTimeout(r, CANCEL_POLL_MS));
      record = (await store.get(id)) ?? record;
    }
    // From here to queue.take: no await, so the engine cannot start this exchange in between.
    const current = store.peek(id) ?? record;
    refuseIfReleased(current, this.queue.isActive(id), this.ctx.sentHeaders.has(id));
    this.queue.take(id);
    try {
      const entry = await ledger.append({ type: 'exchange.cancelled', body: { exchange: id, peer: current.to } });
      this.charges.forget(id);
      const cancelled = await store.transition(id, 'failed', {
        failure: { code: CANCELLED_CODE, message: 'cancelled before it was released to the recipient' },
        ledger: { cancelled: entry.hash },
      });
      if (!cancelled.inline) await outbox.remove(id).catch(() => undefined);
      logger.info({ exchange: id, to: current.to }, 'exchange cancelled');
      this.ctx.events.emit('cancelled', cancelled);
      return cancelled;
    } catch (err) {
      // Not cancelled after all (e.g. the ledger refused the write): the exchange goes back on the queue.
      const latest = await store.get(id).catch(() => undefined);
      if (latest && latest.status === 'queued') this.queue.set(id, 0);
      throw err;
    } finally {
      this.queue.done(id);
      this.queue.kick();
    }
  }
}

/** Throws ERR_CONFLICT (with the state) when `record` can no longer be cancelled. */
function refuseIfReleased(record: ExchangeRecord, active: boolean, sentWhole: boolean): void {
  const state = (status: string, why: string): AgentError =>
    new AgentError('ERR_CONFLICT', `exchange ${record.id} cannot be cancelled: ${why}`, { detail: { status, id: record.id } });
  if (record.status === 'delivered') throw state('delivered', 'it was delivered');
  if (record.status === 'failed') throw state('failed', `it already ended (${record.failure?.code ?? 'failed'})`);
  if (active || record.status === 'sending') throw state('sending', 'it is being sent right now (its recipient may receive it)');
  if (sentWhole || record.headerHash !== undefined)
    throw state('released', 'its envelope reached the relay whole and the recipient may hold it (only the receipt is missing)');
}
