import type { Readable } from 'node:stream';
import type { Ledger } from '../../ledger/index.ts';
import {
  CryptoError,
  createReceipt,
  createReceipts,
  deliveredReceipt,
  openEnvelope,
  type OpenedEnvelope,
  type OpenedItem,
  replayKey,
  type Receipt,
  type RecipientKeys,
  type ReplayStore,
  type SenderKeys,
} from '../crypto/index.ts';
import type { Inbox, InboxMeta, InlineDelivery } from '../store/inbox.ts';
import type { IssuedReceipts } from '../store/issued-receipts.ts';
import type { EngineLogger } from './options.ts';
import type { PeerDirectory } from './peers.ts';
import { decodeTransferMeta, MAX_RECEIPTS_PER_MESSAGE, type WireMessage } from './wire.ts';

/** Most plaintext a batch envelope may hold: batches are opened in memory (senders keep them to about 1 MiB). */
export const MAX_BATCH_BYTES = 4 * 1024 * 1024;

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

  constructor(private readonly o: ReceiverOptions) {}

  /** Answers `receipt.get`: the stored receipt for `from`'s exchange, or `receipt.none`. */
  async onReceiptGet(from: string, id: string): Promise<void> {
    try {
      const stored = await this.o.receipts.get(from, id);
      if (stored) this.o.send(from, { t: 'receipt', receipt: stored as Record<string, unknown> });
      // Still being received (e.g. the last chunks are being verified): the receipt will follow on its own.
      else if (!this.receiving.has(`${from}!${id}`)) this.o.send(from, { t: 'receipt.none', id });
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
    if (meta.n !== undefined) return this.onBatch(transfer, meta.x, meta.n);
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
    const code = typeof raw === 'string' && ERR_CODE.test(raw) ? raw : 'ERR_ENVELOPE_REJECTED';
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
   * Receives a batch envelope (several small exchanges in one transfer):
   * opens it in memory, releases every exchange not delivered before to the
   * inbox in one atomic batch with its receipt, logs `exchange.received` for
   * each, and answers with one signed receipt per exchange. An exchange this
   * agent already has gets a fresh receipt naming this envelope, and nothing
   * is delivered twice. A refused envelope gets one failed receipt, for the
   * batch id.
   */
  private async onBatch(transfer: IncomingTransfer, batchId: string, count: number): Promise<void> {
    const from = transfer.from;
    const key = `${from}!${batchId}`;
    if (this.receiving.has(key)) {
      transfer.abort('cancelled', 'already being received');
      return;
    }
    this.receiving.add(key);
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
        this.refuse(transfer, batchId, err);
        return;
      }
      // An exchange another transfer is delivering right now (a copy orphaned by a relay failover) is left to it.
      const items = opened.items.filter((item) => {
        const k = `${from}!${item.exchangeId}`;
        if (this.receiving.has(k)) return false;
        this.receiving.add(k);
        claimed.push(k);
        return true;
      });
      await this.deliverBatch(opened, items);
    } catch (err) {
      this.o.logger.error({ batch: batchId, from, err: { message: (err as Error).message } }, 'inbound batch failed');
    } finally {
      this.receiving.delete(key);
      for (const k of claimed) this.receiving.delete(k);
    }
  }

  private async deliverBatch(opened: OpenedEnvelope, items: OpenedItem[]): Promise<void> {
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
    const accepted = items.filter((item) => !conflicting.includes(item) && !taken.includes(item));
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
      ],
      signer,
    );
    answers.push(...receipts.slice(accepted.length));
    for (const item of taken) this.o.logger.warn({ exchange: item.exchangeId, from, batch: opened.exchangeId, code: ID_IN_USE }, 'inbound exchange refused');
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
      await this.logReceived(meta);
    }
    for (let i = 0; i < answers.length; i += MAX_RECEIPTS_PER_MESSAGE) {
      this.o.send(from, { t: 'receipts', receipts: answers.slice(i, i + MAX_RECEIPTS_PER_MESSAGE) as unknown as Array<Record<string, unknown>> });
    }
    for (const { meta } of fresh) {
      this.o.logger.info({ exchange: meta.exchangeId, from, bytes: meta.bytes, batch: opened.exchangeId }, 'exchange received');
      this.o.onDelivered?.(meta);
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

/** The failed receipt's code for an exchange id that another hospital's inbox item already has. */
const ID_IN_USE = 'ERR_EXCHANGE_ID_IN_USE';

/** An inbound exchange refused for what it collides with here (its code goes into the failed receipt). */
export class InboundRefusedError extends Error {
  constructor(
    readonly code: typeof ID_IN_USE,
    message: string,
  ) {
    super(message);
    this.name = this.constructor.name;
  }
}

function idInUse(exchangeId: string): InboundRefusedError {
  return new InboundRefusedError(ID_IN_USE, `exchange id ${exchangeId} names another hospital's inbox item`);
}

/** The `exchange.received` entry of an inbox item. */
function receivedEntry(meta: InboxMeta): {
  type: 'exchange.received';
  body: { exchange: string; from: string; contentType: string; bytes: number; hash: string };
} {
  return {
    type: 'exchange.received',
    body: {
      exchange: meta.exchangeId,
      from: meta.from,
      contentType: meta.contentType.split(';')[0]?.trim().toLowerCase() ?? 'application/octet-stream',
      bytes: meta.bytes,
      hash: meta.contentSha256,
    },
  };
}
