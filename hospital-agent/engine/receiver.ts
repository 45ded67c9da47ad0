import type { Readable } from 'node:stream';
import type { Ledger } from '../../ledger/index.ts';
import {
  CryptoError,
  createReceipt,
  deliveredReceipt,
  openEnvelope,
  replayKey,
  type Receipt,
  type RecipientKeys,
  type ReplayStore,
  type SenderKeys,
} from '../crypto/index.ts';
import type { Inbox, InboxMeta } from '../store/inbox.ts';
import type { IssuedReceipts } from '../store/issued-receipts.ts';
import type { EngineLogger } from './options.ts';
import type { PeerDirectory } from './peers.ts';
import { BatchReceiver } from './inbound-batch.ts';
import { checkQuarantinedPatient } from './content-patient.ts';
import { checkReleaseConsent } from './release-consent.ts';
import { idInUse, receivedEntry } from './inbound.ts';
import { RECIPIENT_STORAGE_FULL } from './failure.ts';
import { isNoSpace } from '../errors.ts';
import { decodeTransferMeta, type WireMessage } from './wire.ts';

export { InboundRefusedError } from './inbound.ts';

export { MAX_BATCH_BYTES } from './inbound-batch.ts';

/** An inbound transfer as the receiver needs it (the relay client's InboundTransfer fits). */
export interface IncomingTransfer extends Readable {
  readonly from: string;
  readonly meta: Uint8Array;
  abort(code?: 'rejected' | 'cancelled', reason?: string): void;
}

/** Options of {@link Receiver}. */
export interface ReceiverOptions {
  self: string;
  inbox: Inbox;
  /** Receipts this agent issued, to answer a resend. */
  receipts: IssuedReceipts;
  ledger: Ledger;
  peers: PeerDirectory;
  replay: ReplayStore;
  recipientKeys: () => RecipientKeys;
  signer: () => SenderKeys;
  send: (to: string, message: WireMessage) => void;
  logger: EngineLogger;
  /** Called after an item is released to the inbox (e.g. the EHR webhook). */
  onDelivered?: (meta: InboxMeta) => void;
  /** Called when an envelope is refused (metrics). */
  onRefused?: (code: string) => void;
  /** Refuse releases under a consent the patient did not sign (`consent.requirePatientSigned`). */
  requirePatientSigned?: boolean;
}

const ERR_CODE = /^ERR_[A-Z0-9_]{1,60}$/;

/**
 * Receives exchanges: opens each envelope into quarantine, releases it to the
 * inbox only when everything verified, logs `exchange.received`, and answers
 * with a signed receipt. A resend of an exchange already delivered is
 * answered with the stored receipt and its bytes are refused, so nothing is
 * delivered twice.
 */
export class Receiver {
  /** Exchanges being received right now, as `from!id`. */
  private readonly receiving = new Set<string>();
  private readonly batches: BatchReceiver;

  constructor(private readonly o: ReceiverOptions) {
    this.batches = new BatchReceiver(o, {
      receiving: this.receiving,
      refuse: (transfer, id, err) => this.refuse(transfer, id, err),
      logReceived: (meta) => this.logReceived(meta),
    });
  }

  /** Answers `receipt.get`: the stored receipt for `from`'s exchange, or `receipt.none`. */
  async onReceiptGet(from: string, id: string): Promise<void> {
    try {
      const stored = await this.o.receipts.get(from, id);
      if (stored) return this.o.send(from, { t: 'receipt', receipt: stored as Record<string, unknown> });
      // Still being received (e.g. the last chunks are being verified): the receipt will follow on its own.
      if (this.receiving.has(`${from}!${id}`)) return;
      // Released before a crash took the receipt: answer from the inbox item, as a resend would be.
      const existing = await this.o.inbox.get(id).catch(() => undefined);
      if (existing?.from === from) {
        const receipt = await this.recoverReceipt(existing);
        return this.o.send(from, { t: 'receipt', receipt: receipt as unknown as Record<string, unknown> });
      }
      this.o.send(from, { t: 'receipt.none', id });
    } catch (err) {
      this.o.logger.warn({ exchange: id, from, err: { message: (err as Error).message } }, 'cannot answer a receipt request');
    }
  }

  /** Handles one inbound transfer to completion; never throws. */
  async onTransfer(transfer: IncomingTransfer): Promise<void> {
    const meta = decodeTransferMeta(transfer.meta);
    if (!meta) {
      transfer.abort('rejected', 'malformed transfer meta');
      return;
    }
    if (meta.n !== undefined) return this.batches.receive(transfer, meta.x, meta.n);
    const exchangeId = meta.x;
    const from = transfer.from;
    const key = `${from}!${exchangeId}`;
    if (this.receiving.has(key)) {
      // An earlier copy is still open, e.g. orphaned when the sender's relay node died and not yet aborted by
      // the relay: not a refusal, the sender tries again after a backoff (by then the relay has cleaned up).
      transfer.abort('cancelled', 'already being received');
      return;
    }
    this.receiving.add(key);
    try {
      const previous = await this.o.receipts.get(from, exchangeId);
      if (previous) {
        this.o.send(from, { t: 'receipt', receipt: previous as Record<string, unknown> });
        transfer.abort('rejected', 'duplicate');
        return;
      }
      const existing = await this.o.inbox.get(exchangeId);
      if (existing && existing.from !== from) {
        // Another hospital's item has this id: it is neither answered for nor replaced.
        this.refuse(transfer, exchangeId, idInUse(exchangeId));
        transfer.abort('rejected', 'exchange id in use');
        return;
      }
      if (existing) {
        // Released before a crash took the receipt: rebuild it from what was verified.
        const receipt = await this.recoverReceipt(existing);
        this.o.send(from, { t: 'receipt', receipt: receipt as unknown as Record<string, unknown> });
        transfer.abort('rejected', 'duplicate');
        return;
      }
      await this.forgetUndelivered(from, exchangeId);
      await this.receive(transfer, exchangeId);
    } catch (err) {
      this.o.logger.error({ exchange: exchangeId, from, err: { message: (err as Error).message } }, 'inbound exchange failed');
      transfer.destroy();
    } finally {
      this.receiving.delete(key);
    }
  }

  private async receive(transfer: IncomingTransfer, exchangeId: string): Promise<void> {
    const from = transfer.from;
    let quarantine;
    try {
      quarantine = await this.o.inbox.quarantine(exchangeId);
    } catch {
      // Another copy is still being received: not a refusal, the sender tries again after a backoff.
      transfer.abort('cancelled', 'already being received');
      return;
    }
    let receipt: Receipt;
    let released: InboxMeta;
    try {
      const opened = await openEnvelope(transfer, {
        recipient: this.o.recipientKeys(),
        resolveSender: this.o.peers.signerLookup(),
        quarantine: { path: quarantine.contentPath },
        replay: this.o.replay,
      });
      if (opened.exchangeId !== exchangeId || opened.from !== from || !opened.to.includes(this.o.self)) {
        // The relay-authenticated sender and the signed header must agree.
        throw new CryptoError('ERR_ENVELOPE_WRONG_RECIPIENT', 'envelope does not match its transfer');
      }
      // The content must be about the patient the signed metadata names (what the sender checked).
      await checkQuarantinedPatient(opened, quarantine.contentPath);
      // The consent it is under: the patient's signature verifies, and is there if this recipient requires it.
      await checkReleaseConsent(this.o.ledger, from, opened.consentRef, this.o.requirePatientSigned ?? false);
      receipt = deliveredReceipt(opened, this.o.signer());
      released = await quarantine.release(
        {
          from,
          contentType: opened.contentType,
          bytes: opened.contentLength,
          contentSha256: opened.contentSha256,
          verification: {
            signature: 'verified',
            senderKid: opened.sender.signingKid,
            headerHash: opened.headerHash,
            created: opened.created.toISOString(),
            consentRef: opened.consentRef,
          },
        },
        { contentSynced: true },
      );
    } catch (err) {
      await quarantine.discard();
      this.refuse(transfer, exchangeId, err);
      return;
    }
    // In the inbox now: whatever fails from here, the answer is never a failed receipt. Without a stored
    // receipt the sender asks again, is told there is none and resends; the resend is answered from the inbox
    // item (recoverReceipt), which logs exchange.received then if it is missing.
    try {
      await this.logReceived(released);
      await this.o.receipts.save(from, exchangeId, receipt);
      this.o.send(from, { t: 'receipt', receipt: receipt as unknown as Record<string, unknown> });
    } catch (err) {
      this.o.logger.error(
        { exchange: exchangeId, from, err: { message: (err as Error).message } },
        'exchange delivered, but its receipt could not be recorded; the resend will be answered from the inbox',
      );
    }
    this.o.logger.info({ exchange: exchangeId, from, bytes: released.bytes }, 'exchange received');
    this.o.onDelivered?.(released);
  }

  /** Reports a refused envelope (metrics, log) and, unless the sender will retry anyway, answers with a failed receipt. */
  private refuse(transfer: IncomingTransfer, exchangeId: string, err: unknown): void {
    const from = transfer.from;
    const raw = (err as { code?: unknown }).code;
    // A full disk is this agent's trouble, not the envelope's: the sender is told to try again later.
    const code = isNoSpace(err) ? RECIPIENT_STORAGE_FULL : typeof raw === 'string' && ERR_CODE.test(raw) ? raw : 'ERR_ENVELOPE_REJECTED';
    this.o.onRefused?.(code);
    this.o.logger.warn({ exchange: exchangeId, from, code }, 'inbound envelope refused');
    if (code === 'ERR_ENVELOPE_REPLAYED') return;
    // A transfer cut off in transit is retried by the sender; anything else gets a failed receipt.
    if (code === 'ERR_ENVELOPE_TRUNCATED' && transfer.destroyed) return;
    try {
      const failed = createReceipt({ exchangeId, sender: from, headerHash: null, contentHash: null, disposition: { failed: code } }, this.o.signer());
      this.o.send(from, { t: 'receipt', receipt: failed as unknown as Record<string, unknown> });
    } catch {
      // The exchange id itself may be unusable; the sender times out and retries.
    }
  }

  /**
   * An exchange remembered as opened (replay store) that left no trace of
   * delivery (no receipt issued, nothing in the inbox, no `exchange.received`)
   * was opened when the agent stopped before releasing it: its resend would be
   * refused as a replay forever, so it is forgotten and the resend opened.
   */
  private async forgetUndelivered(from: string, exchangeId: string): Promise<void> {
    const key = replayKey(from, exchangeId);
    if (!(await this.o.replay.has(key, new Date()))) return;
    if (await this.loggedReceived(exchangeId)) return;
    await this.o.replay.forget(key);
    this.o.logger.warn({ exchange: exchangeId, from }, 'opened before a stop but never delivered; opening the resend');
  }

  /** Whether this agent's own feed already has `exchange.received` for the exchange. */
  private async loggedReceived(exchangeId: string): Promise<boolean> {
    return (await this.o.ledger.byExchange(exchangeId)).some((e) => e.entry.feed === this.o.self && e.entry.type === 'exchange.received');
  }

  /** Logs `exchange.received` for an inbox item, unless this feed has it already. */
  private async logReceived(meta: InboxMeta): Promise<void> {
    if (await this.loggedReceived(meta.exchangeId)) return;
    await this.o.ledger.append(receivedEntry(meta));
  }

  private async recoverReceipt(meta: InboxMeta): Promise<Receipt> {
    await this.logReceived(meta);
    const v = meta.verification as { headerHash?: string } | undefined;
    const receipt = createReceipt(
      {
        exchangeId: meta.exchangeId,
        sender: meta.from,
        headerHash: v?.headerHash ?? null,
        contentHash: meta.contentSha256,
        disposition: 'delivered',
        receivedAt: new Date(meta.receivedAt),
      },
      this.o.signer(),
    );
    await this.o.receipts.save(meta.from, meta.exchangeId, receipt);
    return receipt;
  }
}
