// One job: the table of transfers in flight (register, complete, abort) and what both ends are told when one ends.
import type { Logger } from 'pino';
import { encodeNotice } from './protocol/codec.ts';
import type { AbortCode, FrameLimits } from './protocol/constants.ts';
import type { SignedUsageStatement } from './protocol/usage.ts';
import type { RelayMetrics } from './metrics.ts';
import { createTransfer, type Transfer, type TransferEnd, type TransferSpec } from './transfer.ts';

/** Signs the usage statement of a completed transfer. */
export type Meter = (t: { transferId: string; from: string; to: string; bytes: number; completedAt: Date }) => SignedUsageStatement;

/** What the table needs from the relay. */
export interface TransferTableOptions {
  limits: FrameLimits;
  metrics: RelayMetrics;
  log: Logger;
  meter: Meter;
}

/** Transfers in flight on this node, and the legs of those crossing nodes. */
export class TransferTable {
  private readonly all = new Set<Transfer>();
  /** Transfers with one end on another node, by this node's leg id. */
  private readonly legs = new Map<number, Transfer>();
  private nextLeg = 1;

  constructor(private readonly o: TransferTableOptions) {}

  get size(): number {
    return this.all.size;
  }

  /** Transfers crossing nodes. */
  get crossing(): IterableIterator<Transfer> {
    return this.legs.values();
  }

  get crossingCount(): number {
    return this.legs.size;
  }

  /** The transfer of this node's leg `leg`, if it is still open. */
  byLeg(leg: number): Transfer | undefined {
    return this.legs.get(leg);
  }

  /** A leg id not in use, for a transfer about to cross nodes. */
  allocateLeg(): number {
    for (;;) {
      const leg = this.nextLeg;
      this.nextLeg = leg >= 0xffff_ffff ? 1 : leg + 1;
      if (!this.legs.has(leg)) return leg;
    }
  }

  /** Builds a transfer and files it here and at both ends. */
  open(spec: TransferSpec): Transfer {
    const t = createTransfer(spec);
    t.src.adopt(t);
    if (t.dst !== t.src) t.dst.adopt(t);
    if (t.leg !== undefined) this.legs.set(t.leg, t);
    this.all.add(t);
    this.o.metrics.transfersActive.set(this.all.size);
    return t;
  }

  /** Removes `t`; false when it was already gone (so each ending is reported once). */
  forget(t: Transfer): boolean {
    if (!this.all.delete(t)) return false;
    t.src.drop(t);
    if (t.dst !== t.src) t.dst.drop(t);
    if (t.leg !== undefined) this.legs.delete(t.leg);
    this.o.metrics.transfersActive.set(this.all.size);
    return true;
  }

  /** END reached the recipient here: meter the transfer and send both ends the signed usage statement. */
  complete(t: Transfer): void {
    if (!this.forget(t)) return;
    this.o.metrics.transfersCompleted.inc();
    const usage = this.o.meter({ transferId: t.key, from: t.src.id, to: t.dst.id, bytes: t.bytes, completedAt: new Date() });
    this.o.metrics.usageStatements.inc();
    this.o.log.info({ transfer: t.key, from: t.src.id, to: t.dst.id, bytes: t.bytes, fee: usage.statement.fee }, 'transfer completed');
    if (!t.src.closing) t.src.deliver(encodeNotice('usage', { id: t.srcId, ...usage }, this.o.limits));
    if (!t.dst.closing) t.dst.deliver(encodeNotice('usage', { id: t.dstId, ...usage }, this.o.limits));
  }

  /** The recipient's node completed `t` and sent its usage statement (`body`): pass it to the sender. */
  completedRemotely(t: Transfer, body: Record<string, unknown>): void {
    if (!this.forget(t)) return;
    this.o.metrics.transfersCompleted.inc();
    this.o.log.info({ transfer: t.key, from: t.src.id, to: t.dst.id, bytes: t.bytes }, 'transfer completed on another node');
    if (!t.src.closing) t.src.deliver(encodeNotice('usage', { ...body, id: t.srcId }, this.o.limits));
  }

  /** Aborts a transfer and tells both ends (except `by`, who asked for it). */
  abort(t: Transfer, code: AbortCode, reason: string, by?: TransferEnd): void {
    if (!this.forget(t)) return;
    this.o.metrics.transfersAborted.inc({ reason: code });
    this.o.log.info({ transfer: t.key, from: t.src.id, to: t.dst.id, bytes: t.bytes, code }, 'transfer aborted');
    if (by !== t.src && !t.src.closing) t.src.forwardAbort(t.srcId, code, reason);
    if (by !== t.dst && !t.dst.closing) t.dst.forwardAbort(t.dstId, code, reason);
  }

  /** Aborts, at both ends, every transfer on which neither data nor credit moved for `idleMs`; returns how many. */
  abortIdle(now: number, idleMs: number): number {
    let n = 0;
    for (const t of [...this.all]) {
      // A transfer whose END is on its way waits on the recipient's socket, which the write deadline watches.
      if (t.ending || now - t.lastProgress < idleMs) continue;
      this.o.metrics.idleTimeouts.inc();
      this.abort(t, 'idle-timeout', `no data for ${idleMs} ms`);
      n += 1;
    }
    return n;
  }
}
