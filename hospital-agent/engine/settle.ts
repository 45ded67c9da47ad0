/**
 * Settling receipts: each is verified against the recipient's CA-bound key
 * and the envelope sent, logged (a `receipt` entry and its charges, once),
 * and ends its exchange: delivered, or the error it ended in (a receipt that
 * does not verify means retry; a mismatching or failed one is final).
 */
import { RelayError } from '../../relay/protocol/index.ts';
import { receiptSignature, verifyReceipt, type Receipt } from '../crypto/index.ts';
import type { ExchangeRecord } from '../store/exchanges.ts';
import type { Charge, Charges } from './charges.ts';
import { b64, type EngineContext } from './context.ts';
import { NotRetryableError, RecipientUnavailableError, refusesAttemptOnly } from './failure.ts';

/** One receipt to settle, with the header hash it must name (that of the envelope it answers) and the charges to log with it. */
export interface Settlement {
  record: ExchangeRecord;
  receipt: unknown;
  headerHash: string | undefined;
  charges?: Charge[];
}

/** A receipt that verified, with the charges to log beside it. */
interface Accepted {
  record: ExchangeRecord;
  r: Receipt;
  headerHash: string | undefined;
  charges: Charge[];
}

/** Ledger hashes written for one exchange. */
type Logged = NonNullable<ExchangeRecord['ledger']>;

/** See the module comment. */
export class Settler {
  constructor(
    private readonly ctx: EngineContext,
    private readonly charges: Charges,
  ) {}

  /** Verifies a receipt and finishes the exchange with it; throws what the receipt ended in (retry or final). */
  async settleOne(record: ExchangeRecord, receipt: unknown): Promise<void> {
    const error = (await this.settle([{ record, receipt, headerHash: this.ctx.sentHeaders.get(record.id) ?? record.headerHash }])).get(record.id);
    if (error) throw error;
  }

  /**
   * Verifies receipts and finishes their exchanges: a `receipt` ledger entry
   * each (appended together, so they share a group commit) and one store
   * write for all. Returns, per exchange, the error its receipt ended in;
   * `charged` collects the exchanges whose charges were logged here.
   */
  async settle(list: readonly Settlement[], charged?: Set<string>): Promise<Map<string, Error>> {
    const errors = new Map<string, Error>();
    const accepted: Accepted[] = [];
    for (const s of list) {
      const result = await this.verify(s);
      if (result instanceof Error) errors.set(s.record.id, result);
      else accepted.push(result);
    }
    const logged = await Promise.all(accepted.map((a) => this.log(a, charged)));
    const withLedger = accepted.map((a, i) => ({ ...a, ledger: logged[i] ?? {} }));
    await this.finishDelivered(withLedger.filter((a) => a.r.disposition === 'delivered'));
    const refused = withLedger.filter((a) => a.r.disposition !== 'delivered');
    if (refused.length > 0) {
      await this.ctx.ports.store.updateMany(refused.map(({ record, r, ledger }) => ({ id: record.id, patch: { receipt: r, ledger } })));
      for (const { record, r } of refused) {
        const code = typeof r.disposition === 'object' ? r.disposition.failed : 'ERR_EXCHANGE_REJECTED';
        errors.set(record.id, new NotRetryableError('integrity', code, `the recipient refused the envelope (${code})`));
      }
    }
    return errors;
  }

  /** The verified receipt with its charges, or the error the exchange ends in. */
  private async verify({ record, receipt, headerHash, charges = [] }: Settlement): Promise<Accepted | Error> {
    const { peers, self, logger } = this.ctx.ports;
    let r: Receipt;
    try {
      r = (await verifyReceipt(receipt, { resolveSigner: peers.signerLookup(), expect: { exchangeId: record.id, sender: self, recipient: record.to } }))
        .receipt;
      // It must be about the envelope sent; a refusal may come before the header was read, and names none (null).
      const named = r.headerHash;
      if (headerHash && named !== headerHash && (named !== null || r.disposition === 'delivered'))
        throw new Error('receipt headerHash is not the expected one');
    } catch (err) {
      logger.warn({ exchange: record.id, err: { message: (err as Error).message } }, 'receipt rejected');
      return new RelayError('ERR_RELAY_UNDELIVERABLE', 'the receipt did not verify');
    }
    // A refusal of this attempt only (the recipient's disk is full): nothing is logged, the exchange is retried.
    if (typeof r.disposition === 'object' && refusesAttemptOnly(r.disposition.failed)) return new RecipientUnavailableError(r.disposition.failed);
    if (r.disposition === 'delivered' && r.contentHash !== b64(record.contentSha256)) {
      return new NotRetryableError('integrity', 'ERR_RECEIPT_MISMATCH', 'the receipt names another content hash');
    }
    // The release fee is due only for records that reached the requester.
    const release = r.disposition === 'delivered' ? this.charges.releaseFee(record) : [];
    return { record, r, headerHash, charges: [...charges.filter((c) => c.kind !== 'release' || r.disposition === 'delivered'), ...release] };
  }

  /** Appends the receipt entry and the charges not logged yet (concurrently with the batch's others: one group commit). */
  private async log({ record, r, charges }: Accepted, charged: Set<string> | undefined): Promise<Logged> {
    const { store, ledger } = this.ctx.ports;
    const current = store.peek(record.id) ?? (await store.get(record.id)) ?? record;
    const todo = charges.filter((c) => !current.ledger?.charges?.includes(c.charge));
    const [entry] = await Promise.all([
      current.ledger?.receipt
        ? undefined
        : ledger.append({
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
      ...todo.map((body) => ledger.append({ type: 'payment.charged', body })),
    ]);
    if (charges.length > 0) charged?.add(record.id);
    return { ...(entry ? { receipt: entry.hash } : {}), ...(todo.length > 0 ? { charges: todo.map((c) => c.charge) } : {}) };
  }

  /** Marks the delivered exchanges so in one store write, drops their outbox bodies and tells listeners. */
  private async finishDelivered(delivered: ReadonlyArray<Accepted & { ledger: Logged }>): Promise<void> {
    if (delivered.length === 0) return;
    const { store, outbox, logger } = this.ctx.ports;
    const done = await store.transitionMany(
      delivered.map(({ record, r, headerHash, ledger }) => ({
        id: record.id,
        status: 'delivered' as const,
        patch: { receipt: r, ledger, ...(headerHash ? { headerHash } : {}) },
      })),
    );
    for (const record of done) {
      this.ctx.sentHeaders.delete(record.id);
      if (!record.inline) await outbox.remove(record.id);
      logger.info({ exchange: record.id, to: record.to, bytes: record.bytes }, 'exchange delivered');
      this.ctx.events.emit('delivered', record);
    }
  }
}
