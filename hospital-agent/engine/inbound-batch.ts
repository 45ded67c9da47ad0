/**
 * Receiving batch envelopes (several small exchanges in one transfer), for
 * the {@link Receiver}: opened in memory, released to the inbox together
 * with their receipts, answered with one receipt per exchange.
 */
import { CryptoError, createReceipts, openEnvelope, type OpenedEnvelope, type OpenedItem, type Receipt } from '../crypto/index.ts';
import type { InboxMeta, InlineDelivery } from '../store/inbox.ts';
import { isNoSpace } from '../errors.ts';
import { CONTENT_PATIENT_MISMATCH, checksPatient, contentIsAbout } from './content-patient.ts';
import { ID_IN_USE, receivedEntry } from './inbound.ts';
import { consentRefusal } from './release-consent.ts';
import type { IncomingTransfer, ReceiverOptions } from './receiver.ts';
import { MAX_RECEIPTS_PER_MESSAGE } from './wire.ts';

/** Most plaintext a batch envelope may hold: batches are opened in memory (senders keep them to about 1 MiB). */
export const MAX_BATCH_BYTES = 4 * 1024 * 1024;

/** What the batch receiver shares with the {@link Receiver}. */
export interface SharedInbound {
  /** Exchanges (and batches) being received right now, as `from!id`. */
  receiving: Set<string>;
  /** Reports a refused envelope and answers it with a failed receipt. */
  refuse(transfer: IncomingTransfer, exchangeId: string, err: unknown): void;
  /** Logs `exchange.received` once. */
  logReceived(meta: InboxMeta): Promise<void>;
}

/** See the module comment. */
export class BatchReceiver {
  constructor(
    private readonly o: ReceiverOptions,
    private readonly shared: SharedInbound,
  ) {}

  /**
   * Receives a batch envelope (several small exchanges in one transfer):
   * opens it in memory, releases every exchange not delivered before to the
   * inbox in one atomic batch with its receipt, logs `exchange.received` for
   * each, and answers with one signed receipt per exchange. An exchange this
   * agent already has gets a fresh receipt naming this envelope, and nothing
   * is delivered twice. A refused envelope gets one failed receipt, for the
   * batch id.
   */
  async receive(transfer: IncomingTransfer, batchId: string, count: number): Promise<void> {
    const from = transfer.from;
    const key = `${from}!${batchId}`;
    if (this.shared.receiving.has(key)) {
      transfer.abort('cancelled', 'already being received');
      return;
    }
    this.shared.receiving.add(key);
    const claimed: string[] = [];
    try {
      let opened: OpenedEnvelope;
      try {
        opened = await openEnvelope(transfer, {
          recipient: this.o.recipientKeys(),
          resolveSender: this.o.peers.signerLookup(),
          quarantine: { memory: { maxBytes: MAX_BATCH_BYTES } },
          replay: this.o.replay,
        });
        if (opened.exchangeId !== batchId || opened.from !== from || !opened.to.includes(this.o.self) || opened.items?.length !== count || !opened.content) {
          throw new CryptoError('ERR_ENVELOPE_WRONG_RECIPIENT', 'envelope does not match its transfer');
        }
      } catch (err) {
        this.shared.refuse(transfer, batchId, err);
        return;
      }
      // An exchange another transfer is delivering right now (a copy orphaned by a relay failover) is left to it.
      const items = opened.items.filter((item) => {
        const k = `${from}!${item.exchangeId}`;
        if (this.shared.receiving.has(k)) return false;
        this.shared.receiving.add(k);
        claimed.push(k);
        return true;
      });
      await this.deliver(opened, items);
    } catch (err) {
      // A full disk: the sender is told to try the batch again later (what was released stays, and is answered then).
      if (isNoSpace(err)) this.shared.refuse(transfer, batchId, err);
      this.o.logger.error({ batch: batchId, from, err: { message: (err as Error).message } }, 'inbound batch failed');
    } finally {
      this.shared.receiving.delete(key);
      for (const k of claimed) this.shared.receiving.delete(k);
    }
  }
  private async deliver(opened: OpenedEnvelope, items: OpenedItem[]): Promise<void> {
    const from = opened.from;
    const content = opened.content as Buffer;
    const signer = this.o.signer();
    const receivedAt = new Date();
    const ids = items.map((i) => i.exchangeId);
    const previous = await this.o.receipts.getMany(from, ids);
    // The same exchange id with other content than delivered before: answer with what was delivered (the sender sees the mismatch).
    const conflicting = items.filter(
      (item, n) => (previous[n] as Receipt | undefined)?.contentHash !== undefined && (previous[n] as Receipt).contentHash !== item.sha256,
    );
    const answers: Receipt[] = conflicting.map((item) => previous[items.indexOf(item)] as Receipt);
    // An id another hospital's inbox item has is refused (its own failed receipt), not delivered over that item.
    const holders = await this.o.inbox.sendersOf(ids);
    const taken = items.filter((item, n) => previous[n] === undefined && holders[n] !== undefined && holders[n] !== from);
    // Content about another patient than its signed metadata names is refused with a failed receipt of its own.
    const wrong = items.filter(
      (item, n) =>
        previous[n] === undefined &&
        !taken.includes(item) &&
        item.patient !== undefined &&
        checksPatient(item.contentType) &&
        !contentIsAbout(item.contentType, item.patient, content.subarray(item.offset, item.offset + item.length), true),
    );
    // Under a consent whose patient signature fails (or is missing where this recipient requires one): refused the same way.
    const refusedConsent = new Map<OpenedItem, string>();
    for (const [n, item] of items.entries()) {
      if (previous[n] !== undefined || taken.includes(item) || wrong.includes(item)) continue;
      const code = await consentRefusal(this.o.ledger, from, item.consentRef, this.o.requirePatientSigned ?? false);
      if (code) refusedConsent.set(item, code);
    }
    const accepted = items.filter((item) => !conflicting.includes(item) && !taken.includes(item) && !wrong.includes(item) && !refusedConsent.has(item));
    // One signature for all of them: each receipt carries its proof of being under the signed Merkle root.
    const receipts = createReceipts(
      [
        ...accepted.map((item) => ({
          exchangeId: item.exchangeId,
          sender: from,
          headerHash: opened.headerHash,
          contentHash: item.sha256,
          disposition: 'delivered' as const,
          receivedAt,
        })),
        ...taken.map((item) => ({
          exchangeId: item.exchangeId,
          sender: from,
          headerHash: opened.headerHash,
          contentHash: null,
          disposition: { failed: ID_IN_USE },
          receivedAt,
        })),
        ...wrong.map((item) => ({
          exchangeId: item.exchangeId,
          sender: from,
          headerHash: opened.headerHash,
          contentHash: null,
          disposition: { failed: CONTENT_PATIENT_MISMATCH },
          receivedAt,
        })),
        ...[...refusedConsent].map(([item, code]) => ({
          exchangeId: item.exchangeId,
          sender: from,
          headerHash: opened.headerHash,
          contentHash: null,
          disposition: { failed: code },
          receivedAt,
        })),
      ],
      signer,
    );
    answers.push(...receipts.slice(accepted.length));
    for (const item of taken) this.o.logger.warn({ exchange: item.exchangeId, from, batch: opened.exchangeId, code: ID_IN_USE }, 'inbound exchange refused');
    for (const item of wrong)
      this.o.logger.warn({ exchange: item.exchangeId, from, batch: opened.exchangeId, code: CONTENT_PATIENT_MISMATCH }, 'inbound exchange refused');
    for (const [item, code] of refusedConsent) {
      this.o.onRefused?.(code);
      this.o.logger.warn({ exchange: item.exchangeId, from, batch: opened.exchangeId, code }, 'inbound exchange refused');
    }
    const fresh: InlineDelivery[] = [];
    const again: Array<{ meta: InboxMeta; receipt: Receipt }> = [];
    accepted.forEach((item, n) => {
      const before = previous[items.indexOf(item)] as Receipt | undefined;
      const receipt = receipts[n] as Receipt;
      answers.push(receipt);
      const meta: InboxMeta = {
        exchangeId: item.exchangeId,
        from,
        contentType: item.contentType,
        bytes: item.length,
        contentSha256: item.sha256,
        receivedAt: receivedAt.toISOString(),
        verification: {
          signature: 'verified',
          senderKid: opened.sender.signingKid,
          headerHash: opened.headerHash,
          created: opened.created.toISOString(),
          consentRef: item.consentRef,
          batch: opened.exchangeId,
        },
      };
      if (before) again.push({ meta, receipt });
      else fresh.push({ meta, content: content.subarray(item.offset, item.offset + item.length), receipt });
    });
    await this.o.inbox.releaseInline(fresh);
    await Promise.all(fresh.map(({ meta }) => this.o.ledger.append(receivedEntry(meta))));
    // Delivered before (its receipt got lost): the new receipt names this envelope; the ledger entry is there
    // unless a crash came between the release and the log.
    for (const { meta, receipt } of again) {
      await this.o.receipts.save(from, meta.exchangeId, receipt);
      await this.shared.logReceived(meta);
    }
    for (let i = 0; i < answers.length; i += MAX_RECEIPTS_PER_MESSAGE) {
      this.o.send(from, { t: 'receipts', receipts: answers.slice(i, i + MAX_RECEIPTS_PER_MESSAGE) as unknown as Array<Record<string, unknown>> });
    }
    for (const { meta } of fresh) {
      this.o.logger.info({ exchange: meta.exchangeId, from, bytes: meta.bytes, batch: opened.exchangeId }, 'exchange received');
      this.o.onDelivered?.(meta);
    }
  }
}
