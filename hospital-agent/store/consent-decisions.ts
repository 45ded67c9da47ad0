/**
 * The consent decision log (consent/decisions.ts) in the state database:
 * newest `max` decisions, oldest dropped first. Writes are not synced: a
 * crash may lose the last decisions, never the decision itself (the gate
 * decided before it logged).
 */
import type { ConsentDecision, DecisionLog } from '../consent/decisions.ts';
import type { StateDb } from './state-db.ts';

/** How many decisions the log keeps by default (`limits.maxConsentDecisions`). */
export const DEFAULT_MAX_CONSENT_DECISIONS = 10_000;
/** Largest `limits.maxConsentDecisions`. */
export const MAX_CONSENT_DECISIONS = 10_000_000;

/** See the module comment. */
export class ConsentDecisions implements DecisionLog {
  private readonly table;
  /** Decisions in the table; undefined until counted. */
  private count: number | undefined;
  private seq = 0;
  /** Decisions recorded and not yet handed to a write. */
  private pending: Array<[string, ConsentDecision]> = [];
  /** Writes in order, one at a time (the count and the pruning stay exact); each takes every decision pending when it starts, in one batch. */
  private tail: Promise<void> = Promise.resolve();

  constructor(
    db: StateDb,
    private readonly max = DEFAULT_MAX_CONSENT_DECISIONS,
    private readonly onError: (err: unknown) => void = () => undefined,
  ) {
    if (!Number.isInteger(max) || max < 1) throw new TypeError('max must be a positive integer');
    this.table = db.table<ConsentDecision>('consent-decisions', 'json');
  }

  /** Keeps a decision (queued; see {@link flush}). */
  record(decision: ConsentDecision): void {
    // Time first, so keys sort by time; a counter keeps decisions of the same millisecond apart and in order.
    const key = `${decision.at}!${String(process.hrtime.bigint()).padStart(20, '0')}!${String((this.seq += 1)).padStart(10, '0')}`;
    this.pending.push([key, decision]);
    if (this.pending.length === 1) this.tail = this.tail.then(() => this.write()).catch(this.onError);
  }

  /** Resolves once every decision recorded so far is written. */
  flush(): Promise<void> {
    return this.tail;
  }

  private async write(): Promise<void> {
    const batch = this.pending;
    this.pending = [];
    this.count ??= (await this.table.keys().all()).length;
    await this.table.batch(batch.map(([key, value]) => ({ type: 'put' as const, key, value })));
    this.count += batch.length;
    if (this.count > this.max) {
      const oldest = await this.table.keys({ limit: this.count - this.max }).all();
      await this.table.batch(oldest.map((k) => ({ type: 'del' as const, key: k })));
      this.count -= oldest.length;
    }
  }

  /** Decisions, oldest first, optionally from `since` (inclusive, ISO 8601) and up to `limit`. */
  async list(options: { since?: string; limit?: number } = {}): Promise<ConsentDecision[]> {
    await this.flush();
    return this.table.values({ ...(options.since ? { gte: options.since } : {}), ...(options.limit ? { limit: options.limit } : {}) }).all();
  }
}
