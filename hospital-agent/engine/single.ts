/**
 * Sending one exchange in its own envelope: the body (from the outbox, or
 * the state database for a small one) is sealed to the recipient's
 * CA-verified key and streamed through the relay, and its receipt settles
 * it. {@link SingleSend.open} is also what a live send (while uploading) uses.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { sealEnvelope, type SealStream } from '../crypto/index.ts';
import type { ExchangeRecord } from '../store/exchanges.ts';
import type { Charges } from './charges.ts';
import { expired, type EngineContext } from './context.ts';
import { NotRetryableError, RevokedAfterReleaseError } from './failure.ts';
import type { Outcomes } from './outcome.ts';
import type { PeerDirectory } from './peers.ts';
import type { PendingReceipts, ReceiptWaiter } from './receipts.ts';
import type { ReleasedCheck } from './confirm.ts';
import type { ReleaseGate } from './release.ts';
import type { Settler } from './settle.ts';
import { encodeTransferMeta } from './wire.ts';
import { DEFAULT_RETRY_MAX_MS } from './options.ts';
import { RelayError } from '../../relay/protocol/index.ts';

/** The recipient's CA-verified encryption key bundle. */
export type RecipientBundle = Awaited<ReturnType<PeerDirectory['encryptionBundle']>>;

/** A send in progress: the sealer, the transfer's outcome (the header hash) and the receipt waiter. */
export interface Send {
  seal: SealStream;
  sent: Promise<string>;
  receipts: PendingReceipts;
}

/** What a single send is about. */
export type SendTarget = Pick<ExchangeRecord, 'id' | 'to' | 'contentType' | 'consentId' | 'patient'>;

/** See the module comment. */
export class SingleSend {
  constructor(
    private readonly ctx: EngineContext,
    private readonly parts: { gate: ReleaseGate; receipts: ReceiptWaiter; settler: Settler; charges: Charges; outcomes: Outcomes; released: ReleasedCheck },
    /** Puts an exchange back on the queue (after an unexpected error). */
    private readonly requeue: (id: string, dueMs: number) => void,
  ) {}

  /** Sends a queued exchange by id (the queue's starter). */
  async byId(id: string): Promise<void> {
    try {
      const record = await this.ctx.ports.store.get(id);
      if (record && record.status === 'queued') await this.run(record);
    } catch (err) {
      this.ctx.ports.logger.error({ exchange: id, err: { message: (err as Error).message } }, 'send failed unexpectedly');
      this.requeue(id, this.ctx.now().getTime() + DEFAULT_RETRY_MAX_MS);
    }
  }

  private async run(initial: ExchangeRecord): Promise<void> {
    let record = initial;
    try {
      if (expired(this.ctx, record)) throw new NotRetryableError('expired', 'ERR_EXCHANGE_EXPIRED', 'the exchange could not be delivered in time');
      record = await this.startAttempt(record);
      const receipt = await this.transmit(record);
      await this.parts.settler.settleOne(record, receipt);
    } catch (err) {
      if (err instanceof RevokedAfterReleaseError) await this.parts.released.resolve(record, err);
      else await this.parts.outcomes.failed(record, err as Error);
    }
  }

  /** Releases the exchange (consent re-checked, exchange.sent logged once) and marks it sending, in one store write. */
  async startAttempt(record: ExchangeRecord): Promise<ExchangeRecord> {
    const sent = await this.parts.gate.release(record);
    return this.ctx.ports.store.transition(record.id, 'sending', { attempts: record.attempts + 1, ...(sent ? { ledger: { sent } } : {}) });
  }

  /** Streams the envelope of the stored body and resolves with the receipt message. */
  private async transmit(record: ExchangeRecord): Promise<unknown> {
    const { peers, store, outbox } = this.ctx.ports;
    const bundle = await peers.encryptionBundle(record.to);
    // The outbox hashed the body as it stored it: the envelope carries that hash, so the recipient refuses a
    // body that changed on disk since, instead of releasing it.
    const known = { sha256: Buffer.from(record.contentSha256, 'hex'), length: record.bytes };
    let source: Readable;
    if (record.inline) {
      const body = await store.body(record.id);
      if (!body) throw new NotRetryableError('internal', 'ERR_OUTBOX_MISSING', 'the stored body is missing');
      source = Readable.from([body], { objectMode: false });
    } else source = outbox.read(record.id);
    return this.receipt(
      record,
      this.open(record, bundle, source, () => known),
    );
  }

  /**
   * Opens the relay transfer and starts sealing `source` into it; the
   * receipt waiter is registered before a byte leaves, so a fast receipt is
   * never missed.
   */
  open(x: SendTarget, bundle: RecipientBundle, source: Readable, knownContent: () => { sha256: Buffer; length: number }): Send {
    const { relay, sender } = this.ctx.ports;
    const receipts = this.parts.receipts.expect([x.id]);
    const transfer = relay.openTransfer(x.to, { meta: encodeTransferMeta(x.id) });
    const seal = sealEnvelope(source, {
      exchangeId: x.id,
      sender: sender(),
      recipients: [bundle],
      contentType: x.contentType,
      consentRef: x.consentId,
      ...(x.patient !== undefined ? { patient: x.patient } : {}),
      now: this.ctx.now(),
      knownContent,
    });
    // A usage statement the relay signed is a charge, whatever this side made of the transfer afterwards.
    transfer.usage.then(
      (u) =>
        this.parts.charges
          .record([x.id], u)
          .catch((err: Error) => this.ctx.ports.logger.error({ exchange: x.id, err: { message: err.message } }, 'cannot log the charges of a transfer')),
      () => undefined, // aborted: the relay charges nothing
    );
    const sent = pipeline(seal, transfer).then(async () => (await seal.summary).headerHash);
    sent.catch(() => undefined);
    return { seal, sent, receipts };
  }

  /** Waits for the envelope to leave, then for the recipient's receipt (asking again while it is missing). */
  async receipt(record: ExchangeRecord, send: Send): Promise<unknown> {
    try {
      const { sendError } = await this.parts.receipts.collect(record.to, send.receipts, send.sent);
      const receipt = send.receipts.results.get(record.id);
      if (receipt !== undefined) return receipt;
      if (sendError) throw sendError;
      throw new RelayError('ERR_RELAY_UNDELIVERABLE', 'no receipt from the recipient in time');
    } finally {
      send.receipts.close();
    }
  }
}
