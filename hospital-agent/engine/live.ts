/**
 * Sending while the body is still being uploaded, so the upload and the send
 * overlap (see ExchangeService). The upload writes every byte it stores to
 * the send's input too; the envelope's last chunk and signed trailer,
 * without which the recipient releases nothing, are written only after
 * `commit()`, once the body is on disk, the exchange is recorded and
 * `exchange.sent` is in the ledger.
 */
import { PassThrough, type Writable } from 'node:stream';
import { TransferAbortedError } from '../../relay/protocol/index.ts';
import type { ExchangeRecord } from '../store/exchanges.ts';
import type { EngineContext } from './context.ts';
import type { Outcomes } from './outcome.ts';
import type { SendQueue } from './queue.ts';
import type { Settler } from './settle.ts';
import type { RecipientBundle, Send, SendTarget, SingleSend } from './single.ts';

/** A send started while the body is still being uploaded ({@link LiveSends.start}). */
export interface LiveSend {
  /** The upload writes every stored byte here too; it never ends it (the engine does, after `commit`). */
  readonly input: Writable;
  /** The body is stored and the exchange recorded: finish the send (from the outbox if the live one broke). */
  commit(record: ExchangeRecord): void;
  /** The upload failed, or an idempotent retry matched an earlier exchange: abort the send. */
  abandon(): void;
}

/** Bytes the live send buffers ahead of the sealer. */
const LIVE_INPUT_BUFFER = 4 * 1024 * 1024;

/** See the module comment. */
export class LiveSends {
  constructor(
    private readonly ctx: EngineContext,
    private readonly queue: SendQueue,
    private readonly single: SingleSend,
    private readonly settler: Settler,
    private readonly outcomes: Outcomes,
  ) {}

  /**
   * Starts the send of `x` now; undefined when it cannot start now (relay
   * down, no free send slot, recipient key unknown): the exchange then goes
   * through the queue as usual.
   */
  async start(x: SendTarget): Promise<LiveSend | undefined> {
    if (!this.ctx.ports.relay.connected || !this.queue.takeSlot(x.id)) return undefined;
    const release = (): void => this.queue.releaseSlot(x.id);
    let bundle: RecipientBundle;
    try {
      bundle = await this.ctx.ports.peers.encryptionBundle(x.to);
    } catch {
      release();
      return undefined;
    }
    const input = new PassThrough({ highWaterMark: LIVE_INPUT_BUFFER });
    // The upload hashes the body as it stores it; the sealer uses that hash once the record exists.
    let known: { sha256: Buffer; length: number } | undefined;
    const knownContent = (): { sha256: Buffer; length: number } => {
      if (!known) throw new Error('the live send ended before its exchange was recorded');
      return known;
    };
    let send: Send;
    try {
      send = this.single.open(x, bundle, input, knownContent);
    } catch {
      release();
      return undefined;
    }
    let failed = false;
    send.sent.catch(() => {
      failed = true;
    });
    let settled = false;
    const done = (): void => {
      release();
      this.queue.kick();
    };
    return {
      input,
      commit: (record) => {
        if (settled) return;
        settled = true;
        if (failed) return this.resendQueued(record, send, done);
        known = { sha256: Buffer.from(record.contentSha256, 'hex'), length: record.bytes };
        void this.finish(record, input, send).finally(done);
      },
      abandon: () => {
        if (settled) return;
        settled = true;
        send.receipts.close();
        send.seal.destroy(new TransferAbortedError('cancelled', 'the upload did not complete', true));
        done();
      },
    };
  }

  /**
   * The live send broke (e.g. the relay went away) while the body was still
   * arriving: count the attempt and send the stored body through the queue.
   */
  private resendQueued(record: ExchangeRecord, send: Send, done: () => void): void {
    send.receipts.close();
    void this.ctx.ports.store
      .update(record.id, { attempts: record.attempts + 1 })
      .catch((err: Error) => this.ctx.ports.logger.warn({ exchange: record.id, err: { message: err.message } }, 'cannot count a failed live send'))
      .finally(() => {
        done();
        this.queue.enqueue(record.id);
      });
  }

  private async finish(created: ExchangeRecord, input: PassThrough, send: Send): Promise<void> {
    let record = created;
    try {
      record = await this.single.startAttempt(created);
      // The body is durable and its release logged: let the sealer write the last chunk and the trailer.
      input.end();
      const receipt = await this.single.receipt(record, send);
      await this.settler.settleOne(record, receipt);
    } catch (err) {
      send.seal.destroy(err as Error);
      send.receipts.close();
      await this.outcomes.failed(record, err as Error);
    }
  }
}
