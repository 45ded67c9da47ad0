/**
 * Sending small (inline) exchanges to one recipient in one batch envelope:
 * each is released (consent re-checked, `exchange.sent` logged once), the
 * bodies are sealed together, and every exchange settles with its own
 * receipt. An exchange whose receipt does not come goes back to the queue
 * alone; a transfer that breaks sends them all back.
 */
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { sha256Hex } from '../../ledger/index.ts';
import { RelayError, type VerifiedUsage } from '../../relay/protocol/index.ts';
import { BATCH_CONTENT_TYPE, sealEnvelope, verifyReceipt, type BatchItemInput } from '../crypto/index.ts';
import type { ExchangeRecord } from '../store/exchanges.ts';
import type { Charges } from './charges.ts';
import { expired, type EngineContext } from './context.ts';
import { NotRetryableError, RevokedAfterReleaseError, refusal } from './failure.ts';
import type { Outcomes } from './outcome.ts';
import type { PendingReceipts, ReceiptWaiter } from './receipts.ts';
import type { ReleasedCheck } from './confirm.ts';
import type { ReleaseGate } from './release.ts';
import type { Settler } from './settle.ts';
import { encodeTransferMeta } from './wire.ts';

/** See the module comment. */
export class BatchSend {
  constructor(
    private readonly ctx: EngineContext,
    private readonly parts: { gate: ReleaseGate; receipts: ReceiptWaiter; settler: Settler; charges: Charges; outcomes: Outcomes; released: ReleasedCheck },
  ) {}

  /** Sends `initial` (inline exchanges to `to`) in one batch envelope (the queue's starter). */
  async run(to: string, initial: readonly ExchangeRecord[]): Promise<void> {
    const started = await this.startAttempts(initial);
    if (started.length === 0) return;
    const { ready, bodies } = await this.readBodies(started);
    if (ready.length === 0) return;
    const batchId = randomUUID();
    let receipts: PendingReceipts | undefined;
    try {
      const bundle = await this.ctx.ports.peers.encryptionBundle(to);
      // Waiters first: a fast receipt is never missed.
      receipts = this.parts.receipts.expect(
        ready.map((r) => r.id),
        batchId,
      );
      const transfer = this.ctx.ports.relay.openTransfer(to, { meta: encodeTransferMeta(batchId, ready.length) });
      this.ctx.events.emit('batch', ready.length);
      const seal = sealEnvelope(Readable.from([Buffer.concat(bodies)], { objectMode: false }), {
        exchangeId: batchId,
        sender: this.ctx.ports.sender(),
        recipients: [bundle],
        contentType: BATCH_CONTENT_TYPE,
        consentRef: null,
        now: this.ctx.now(),
        batch: ready.map((r): BatchItemInput => ({
          exchangeId: r.id,
          contentType: r.contentType,
          consentRef: r.consentId,
          ...(r.patient !== undefined ? { patient: r.patient } : {}),
          length: r.bytes,
          sha256: Buffer.from(r.contentSha256, 'hex'),
        })),
      });
      // The relay's usage statement comes as the last byte is forwarded, before the receipts: its charges are
      // logged and stored with them. One that comes later is recorded on its own.
      let usage: VerifiedUsage | undefined;
      let settled = false;
      transfer.usage.then(
        (u) => {
          if (settled)
            void this.parts.charges
              .record(
                ready.map((r) => r.id),
                u,
              )
              .catch(() => undefined);
          else usage = u;
        },
        () => undefined,
      );
      const sent = pipeline(seal, transfer).then(async () => (await seal.summary).headerHash);
      sent.catch(() => undefined);
      const { headerHash, sendError } = await this.parts.receipts.collect(to, receipts, sent);
      settled = true;
      await this.finish(to, ready, receipts, headerHash, sendError, usage);
    } catch (err) {
      await Promise.all(ready.map((r) => this.parts.outcomes.failed(r, err as Error)));
    } finally {
      receipts?.close();
    }
  }

  /** Releases each exchange (as a single send does) and marks those released `sending` in one store write; the rest fail or retry alone. */
  private async startAttempts(records: readonly ExchangeRecord[]): Promise<ExchangeRecord[]> {
    const released = new Map<string, string | undefined>();
    await Promise.all(
      records.map(async (record) => {
        try {
          if (expired(this.ctx, record)) throw new NotRetryableError('expired', 'ERR_EXCHANGE_EXPIRED', 'the exchange could not be delivered in time');
          released.set(record.id, await this.parts.gate.release(record));
        } catch (err) {
          if (err instanceof RevokedAfterReleaseError) await this.parts.released.resolve(record, err);
          else await this.parts.outcomes.failed(record, err as Error);
        }
      }),
    );
    const go = records.filter((r) => released.has(r.id));
    if (go.length === 0) return [];
    return this.ctx.ports.store.transitionMany(
      go.map((r) => {
        const sent = released.get(r.id);
        return { id: r.id, status: 'sending' as const, patch: { attempts: r.attempts + 1, ...(sent ? { ledger: { sent } } : {}) } };
      }),
    );
  }

  /** The stored bodies of the batch; an exchange whose body is missing or damaged fails alone. */
  private async readBodies(started: readonly ExchangeRecord[]): Promise<{ ready: ExchangeRecord[]; bodies: Buffer[] }> {
    const { store } = this.ctx.ports;
    const ready: ExchangeRecord[] = [];
    const bodies: Buffer[] = [];
    for (const record of started) {
      // The copy the API stored is in memory; one read back from disk (after a restart) is checked against its hash.
      const cached = store.cachedBody(record.id);
      const body = cached ?? (await store.body(record.id).catch(() => undefined));
      if (!body || body.length !== record.bytes || (!cached && sha256Hex(body) !== record.contentSha256)) {
        await this.parts.outcomes.failed(record, new NotRetryableError('internal', 'ERR_OUTBOX_MISSING', 'the stored body is missing or damaged'));
        continue;
      }
      ready.push(record);
      bodies.push(body);
    }
    return { ready, bodies };
  }

  /** Settles what a batch's receipts say; exchanges without a usable receipt go back to the queue (or fail) one by one. */
  private async finish(
    to: string,
    records: readonly ExchangeRecord[],
    receipts: PendingReceipts,
    headerHash: string | undefined,
    sendError: Error | undefined,
    usage: VerifiedUsage | undefined,
  ): Promise<void> {
    const { charges, settler, outcomes } = this.parts;
    if (receipts.failure !== undefined) return this.refused(to, records, receipts.failure, usage);
    // Release fees included: settling drops them for exchanges whose receipt is not 'delivered'.
    const chargesFor = charges.ofBatch(records, usage);
    const answered = records.filter((r) => receipts.results.get(r.id) !== undefined);
    const charged = new Set<string>();
    const errors = await settler.settle(
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
      await charges.record(
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
        return error ? outcomes.failed(record, error) : undefined;
      }),
    );
  }

  /** The recipient refused the envelope as a whole: its signed failed receipt names the batch. */
  private async refused(to: string, records: readonly ExchangeRecord[], failure: unknown, usage: VerifiedUsage | undefined): Promise<void> {
    if (usage)
      await this.parts.charges.record(
        records.map((r) => r.id),
        usage,
      );
    const code = await this.refusalCode(to, failure);
    const error = (): Error =>
      code
        ? refusal(code, `the recipient refused the batch envelope (${code})`)
        : new RelayError('ERR_RELAY_UNDELIVERABLE', 'the batch receipt did not verify');
    await Promise.all(records.map((r) => this.parts.outcomes.failed(r, error())));
  }

  /** The error code of a verified failed receipt for a whole batch, or undefined when it does not verify. */
  private async refusalCode(to: string, receipt: unknown): Promise<string | undefined> {
    try {
      const verified = await verifyReceipt(receipt, {
        resolveSigner: this.ctx.ports.peers.signerLookup(),
        expect: { sender: this.ctx.ports.self, recipient: to },
      });
      const d = verified.receipt.disposition;
      return typeof d === 'object' ? d.failed : undefined;
    } catch (err) {
      this.ctx.ports.logger.warn({ err: { message: (err as Error).message } }, 'batch receipt rejected');
      return undefined;
    }
  }
}
