/**
 * What becomes of an exchange whose attempt did not end in a delivery: back
 * to the queue with backoff, or failed for good (an `exchange.failed` entry
 * balancing its logged release, the stored body dropped), as
 * {@link classify} decides.
 */
import { backoffDelay } from '../../relay/protocol/index.ts';
import type { ExchangeRecord } from '../store/exchanges.ts';
import type { Charges } from './charges.ts';
import type { EngineContext } from './context.ts';
import { classify } from './failure.ts';
import type { ReleaseGate } from './release.ts';

/** See the module comment. */
export class Outcomes {
  constructor(
    private readonly ctx: EngineContext,
    private readonly gate: ReleaseGate,
    private readonly charges: Charges,
    /** Puts the exchange back on the queue, due at `dueMs`. */
    private readonly requeue: (id: string, dueMs: number) => void,
  ) {}

  /** Retries or fails `record` after `err`. */
  async failed(record: ExchangeRecord, err: Error): Promise<void> {
    this.ctx.sentHeaders.delete(record.id);
    const final = classify(err);
    if (!final) return this.retry(record, err);
    this.charges.forget(record.id);
    const { store, ledger, outbox, logger } = this.ctx.ports;
    const current = (await store.get(record.id)) ?? record;
    let ledgerPatch: NonNullable<ExchangeRecord['ledger']> = {};
    // A release never logged (consent refused at send time) needs no failure entry to balance it.
    const sent = await this.gate.loggedSent(current);
    if (!current.ledger?.failed && sent) {
      const entry = await ledger.append({ type: 'exchange.failed', body: { exchange: record.id, peer: record.to, reason: final.reason } });
      ledgerPatch = { sent, failed: entry.hash };
    }
    const failed = await store.transition(record.id, 'failed', { failure: { code: final.code, message: final.message }, ledger: ledgerPatch });
    if (!failed.inline) await outbox.remove(record.id);
    logger.warn({ exchange: record.id, to: record.to, code: final.code }, 'exchange failed');
    this.ctx.events.emit('failed', failed);
  }

  private async retry(record: ExchangeRecord, err: Error): Promise<void> {
    const delay = backoffDelay(record.attempts, this.ctx.settings.retry) + 100;
    const due = this.ctx.now().getTime() + delay;
    const next = await this.ctx.ports.store.transition(record.id, 'queued', { nextAttemptAt: new Date(due).toISOString() });
    this.requeue(record.id, due);
    this.ctx.ports.logger.info(
      { exchange: record.id, attempt: record.attempts, retryInMs: delay, code: (err as { code?: string }).code ?? err.name },
      'exchange will be retried',
    );
    this.ctx.events.emit('retry', next, err);
  }
}
