/**
 * Charges of the transfers the engine made: the `payment.charged` entries a
 * relay's signed usage statement yields (see {@link chargesFromUsage}),
 * logged once per exchange, and the release fee held back until the receipt
 * says the records reached the requester.
 */
import type { BodyOf } from '../../ledger/index.ts';
import type { VerifiedUsage } from '../../relay/protocol/index.ts';
import type { ExchangeRecord } from '../store/exchanges.ts';
import type { EngineContext } from './context.ts';
import { chargesFromUsage } from './payments.ts';

/** A `payment.charged` body. */
export type Charge = BodyOf<'payment.charged'>;

/** See the module comment. */
export class Charges {
  /** Usage statements of single transfers that answered a records request, kept until the receipt says whether the release fee is due. */
  private readonly releaseUsage = new Map<string, VerifiedUsage>();

  constructor(private readonly ctx: EngineContext) {}

  /**
   * Logs the charges a transfer's signed usage statement yields for the
   * exchanges it carried (one, or a batch): the transport fee at once, a
   * release fee only for an exchange already delivered (one still waiting for
   * its receipt keeps the statement until it is settled).
   */
  async record(exchangeIds: readonly string[], usage: VerifiedUsage, only?: ReadonlySet<string>): Promise<void> {
    const { store, ledger } = this.ctx.ports;
    const records = (await Promise.all(exchangeIds.map((id) => store.get(id)))).filter((r): r is ExchangeRecord => r !== undefined);
    if (records.length !== exchangeIds.length) return;
    const delivered = new Set(records.filter((r) => r.status === 'delivered').map((r) => r.id));
    for (const r of records) if (r.requestId && !delivered.has(r.id) && r.status !== 'failed' && exchangeIds.length === 1) this.releaseUsage.set(r.id, usage);
    // Computed over every exchange the transfer carried (its fee goes on the first), whichever of them are logged here.
    const charges = chargesFromUsage(records, usage, delivered);
    const todo = records
      .map((record, i) => ({ record, bodies: (charges[i] ?? []).filter((c) => !record.ledger?.charges?.includes(c.charge)) }))
      .filter((x) => x.bodies.length > 0 && (!only || only.has(x.record.id)));
    if (todo.length === 0) return;
    await Promise.all(todo.flatMap((x) => x.bodies.map((body) => ledger.append({ type: 'payment.charged', body }))));
    await store.updateMany(todo.map((x) => ({ id: x.record.id, patch: { ledger: { charges: x.bodies.map((c) => c.charge) } } })));
  }

  /** The charges of every exchange a batch transfer carried, per exchange (release fees included: settling drops those not delivered). */
  ofBatch(records: readonly ExchangeRecord[], usage: VerifiedUsage | undefined): (record: ExchangeRecord) => Charge[] {
    const charges = usage ? chargesFromUsage(records, usage, new Set(records.map((r) => r.id))) : [];
    return (record) => charges[records.indexOf(record)] ?? [];
  }

  /** The release charge of a delivered single-transfer exchange whose usage statement came before its receipt. */
  releaseFee(record: ExchangeRecord): Charge[] {
    const usage = this.releaseUsage.get(record.id);
    if (!usage) return [];
    this.releaseUsage.delete(record.id);
    return (chargesFromUsage([record], usage, new Set([record.id]))[0] ?? []).filter((c) => c.kind === 'release');
  }

  /** The exchange failed for good: no release fee will be due. */
  forget(id: string): void {
    this.releaseUsage.delete(id);
  }
}
