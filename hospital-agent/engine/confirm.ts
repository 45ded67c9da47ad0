/**
 * An exchange released before (its `exchange.sent` is logged) whose consent
 * now refuses the resend: the recipient may have received it already, and
 * only the sender lost the receipt (a lost connection, a restart). Before
 * failing it, the engine asks the recipient for its receipt: a receipt
 * settles it as delivered; `receipt.none` (it never completed there) fails
 * it under the consent's refusal; no answer leaves it to be asked again
 * later. Nothing is sent again under a consent that no longer covers it.
 */
import { RelayError } from '../../relay/protocol/index.ts';
import type { ExchangeRecord } from '../store/exchanges.ts';
import type { EngineContext } from './context.ts';
import type { RevokedAfterReleaseError } from './failure.ts';
import type { Outcomes } from './outcome.ts';
import type { ReceiptWaiter } from './receipts.ts';
import type { Settler } from './settle.ts';

/** See the module comment. */
export class ReleasedCheck {
  constructor(
    private readonly ctx: EngineContext,
    private readonly parts: { receipts: ReceiptWaiter; settler: Settler; outcomes: Outcomes },
  ) {}

  /** Settles, fails or requeues `record` (queued) after `refusal`, by what its recipient says. */
  async resolve(record: ExchangeRecord, refusal: RevokedAfterReleaseError): Promise<void> {
    const { store, send } = this.ctx.ports;
    let current = record;
    try {
      current = await store.transition(record.id, 'sending', { attempts: record.attempts + 1 });
      const pending = this.parts.receipts.expect([record.id]);
      try {
        send?.(record.to, { t: 'receipt.get', id: record.id });
        // Nothing is sent: the envelope's header is the one named by the stored record, if any.
        await this.parts.receipts.collect(record.to, pending, Promise.resolve(record.headerHash ?? ''));
      } finally {
        pending.close();
      }
      if (!pending.results.has(record.id)) throw new RelayError('ERR_RELAY_UNDELIVERABLE', 'the recipient did not say whether it holds the exchange');
      const receipt = pending.results.get(record.id);
      // receipt.none: it never completed there, and the consent refuses sending it again.
      if (receipt === undefined) throw refusal;
      await this.parts.settler.settleOne(current, receipt);
    } catch (err) {
      await this.parts.outcomes.failed(current, err as Error);
    }
  }
}
