/**
 * Outgoing exchanges, a table of the state database: records by id, an
 * index by status, the bodies of small (inline) exchanges, and the
 * Idempotency-Key index entry of each, written in one batch so a crash never
 * leaves one without the other.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { AgentError } from '../errors.ts';
import { idempotencyIndexKey, type IdempotencyIndex } from './idempotency.ts';
import { Mutex } from './mutex.ts';
import type { BatchOp, StateDb } from './state-db.ts';

/** Life cycle of an outgoing exchange. `delivered` and `failed` are final. */
export type ExchangeStatus = 'queued' | 'sending' | 'delivered' | 'failed';

const NEXT: Record<ExchangeStatus, readonly ExchangeStatus[]> = {
  queued: ['sending', 'failed'],
  sending: ['queued', 'delivered', 'failed'],
  delivered: [],
  failed: [],
};

/** Why an exchange failed: a code and a message without PHI. */
export interface Failure {
  code: string;
  message: string;
}

/** What the agent keeps about one outgoing exchange. */
export interface ExchangeRecord {
  id: string;
  to: string;
  patientHash: string;
  /**
   * The patient the content was checked to be about (`system|value`, or a
   * bare value for any system), sealed into the envelope's encrypted
   * metadata so that the recipient checks the content against it. Kept here
   * as the body is kept in the outbox: both leave with the exchange.
   */
  patient?: string;
  consentId: string;
  purpose: string;
  contentType: string;
  /** Scope items the payload needs (kinds of resource and sensitive labels: consent/scope.ts), re-checked at send time. */
  scope?: string[];
  /** The accepted incoming records request this exchange answers: its requester (the recipient) pays the tariff's release fee. */
  requestId?: string;
  bytes: number;
  /** SHA-256 of the body, lowercase hex. */
  contentSha256: string;
  status: ExchangeStatus;
  /** When the exchange entered its current status (keys the status index). */
  statusAt?: string;
  attempts: number;
  createdAt: string;
  updatedAt: string;
  nextAttemptAt?: string;
  failure?: Failure;
  /** The verified receipt, once delivered (or a failed receipt). */
  receipt?: unknown;
  /** SHA-256 of the envelope header (base64url) of the last complete send. */
  headerHash?: string;
  /** Ledger entries written for this exchange (hashes), so a resumed send never writes one twice. */
  ledger?: { sent?: string; receipt?: string; failed?: string; cancelled?: string; charges?: string[] };
  /** Hash of what the request asked for, to detect a reused Idempotency-Key (only with one). */
  requestFingerprint?: string;
  /**
   * The body is small and kept in this store (written in the same atomic,
   * synced batch as the record) instead of an outbox file; such exchanges
   * travel in batch envelopes.
   */
  inline?: boolean;
}

/** Fields the engine may change; `ledger` is merged into the stored bookkeeping, not replaced. */
export type ExchangePatch = Partial<Pick<ExchangeRecord, 'failure' | 'receipt' | 'nextAttemptAt' | 'attempts' | 'headerHash' | 'ledger'>>;

/** Fields a caller supplies to create an exchange. */
export type NewExchange = Omit<
  ExchangeRecord,
  'status' | 'attempts' | 'createdAt' | 'updatedAt' | 'requestFingerprint' | 'receipt' | 'headerHash' | 'ledger' | 'failure' | 'nextAttemptAt' | 'inline'
>;

/** One status change of {@link ExchangeStore.transitionMany}. */
export interface Transition {
  id: string;
  status: ExchangeStatus;
  patch?: ExchangePatch;
}

/** Digest of the parts of a request that an idempotent retry must repeat. */
export function requestFingerprint(x: Pick<NewExchange, 'to' | 'patientHash' | 'consentId' | 'purpose' | 'contentType' | 'contentSha256'>): string {
  return createHash('sha256')
    .update(JSON.stringify([x.to, x.patientHash, x.consentId, x.purpose, x.contentType, x.contentSha256]))
    .digest('hex');
}

/**
 * A patch whose `ledger` part is merged into what is stored (charges added to
 * the list), inside the store's mutex, so concurrent steps of one exchange
 * (e.g. its usage charge and its receipt) never overwrite each other's entries.
 */
function withLedger(current: ExchangeRecord, patch: ExchangePatch): ExchangePatch {
  if (!patch.ledger) return patch;
  const charges = [...new Set([...(current.ledger?.charges ?? []), ...(patch.ledger.charges ?? [])])];
  return { ...patch, ledger: { ...current.ledger, ...patch.ledger, ...(charges.length > 0 ? { charges } : {}) } };
}

function statusKey(r: Pick<ExchangeRecord, 'status' | 'statusAt' | 'createdAt' | 'id'>): string {
  return `${r.status}!${r.statusAt ?? r.createdAt}!${r.id}`;
}

/**
 * See the module comment. Every change goes through one mutex, so
 * concurrent API calls and the engine see transitions in order.
 */
export class ExchangeStore {
  private readonly records;
  /** Index `status!statusAt!id`, so listing one status (e.g. what is queued) never scans every exchange. */
  private readonly byStatus;
  /** Bodies of unfinished inline exchanges. */
  private readonly bodies;
  private readonly mutex = new Mutex();
  /** Inline bodies of unfinished exchanges, so sending them reads nothing (the store keeps the durable copy). */
  private readonly bodyCache = new Map<string, Buffer>();
  /**
   * Unfinished exchanges as last written, so the engine's many reads of the
   * exchanges it is working on skip LevelDB. Every write goes through this
   * store, so the copy is never stale; final records leave it.
   */
  private readonly unfinishedCache = new Map<string, ExchangeRecord>();
  /**
   * The status and status time the database holds for each unfinished
   * exchange (its status index entry). `sending` is kept in memory only: a
   * restart resumes such an exchange from `queued` anyway, so writing it would
   * buy nothing; its fields (attempts, ledger bookkeeping) are written with
   * the exchange's next durable step.
   */
  private readonly durable = new Map<string, { status: ExchangeStatus; statusAt: string }>();

  private remember(record: ExchangeRecord, persisted: boolean): void {
    if (record.status === 'delivered' || record.status === 'failed') {
      this.unfinishedCache.delete(record.id);
      this.bodyCache.delete(record.id);
      this.durable.delete(record.id);
      return;
    }
    this.unfinishedCache.set(record.id, record);
    if (persisted) this.durable.set(record.id, { status: record.status, statusAt: record.statusAt ?? record.createdAt });
  }

  /** `record` as the database holds it: with the durable status of an exchange that is `sending` in memory. */
  private stored(record: ExchangeRecord): ExchangeRecord {
    const d = this.durable.get(record.id);
    return d && d.status !== record.status ? { ...record, status: d.status, statusAt: d.statusAt } : record;
  }

  /** The status index key the database holds for `record`. */
  private storedStatusKey(record: ExchangeRecord): string {
    const d = this.durable.get(record.id);
    return d ? statusKey({ status: d.status, statusAt: d.statusAt, createdAt: record.createdAt, id: record.id }) : statusKey(record);
  }

  constructor(
    private readonly db: StateDb,
    private readonly idempotency: IdempotencyIndex,
  ) {
    this.records = db.table<ExchangeRecord>('exchanges', 'json');
    this.byStatus = db.table<string>('by-status', 'utf8');
    this.bodies = db.table<Buffer>('bodies', 'buffer');
  }

  /** Loads the unfinished exchanges into memory once the database is open (the engine works on them; the count is a gauge). */
  async load(): Promise<void> {
    const all = [...(await this.byStatusOrder('queued', {})), ...(await this.byStatusOrder('sending', {}))];
    for (const r of all) this.remember(r, true);
  }

  /** The exchange an idempotency key of `principal` created, if any. */
  async byIdempotencyKey(principal: string, key: string): Promise<ExchangeRecord | undefined> {
    const id = await this.idempotency.lookup(idempotencyIndexKey(principal, key));
    return id === undefined ? undefined : this.get(id);
  }

  /**
   * Records a new queued exchange. With an idempotency key already used by
   * the same principal, returns the earlier record (`created: false`) when the
   * request matches, and throws ERR_CONFLICT when it differs.
   */
  async create(
    input: NewExchange,
    idempotency?: { principal: string; key: string },
    options: { body?: Buffer } = {},
  ): Promise<{ record: ExchangeRecord; created: boolean }> {
    if (!idempotency) return { record: await this.insert(input, undefined, undefined, options.body), created: true };
    const fingerprint = requestFingerprint(input);
    const indexKey = idempotencyIndexKey(idempotency.principal, idempotency.key);
    return this.idempotency.serialized(indexKey, async () => {
      const existingId = await this.idempotency.lookup(indexKey);
      if (existingId !== undefined) {
        const existing = await this.get(existingId);
        if (existing) {
          const same =
            existing.requestFingerprint !== undefined && timingSafeEqual(Buffer.from(existing.requestFingerprint, 'hex'), Buffer.from(fingerprint, 'hex'));
          if (!same) throw new AgentError('ERR_CONFLICT', 'Idempotency-Key was already used for a different request');
          return { record: existing, created: false };
        }
      }
      return { record: await this.insert(input, fingerprint, indexKey, options.body), created: true };
    });
  }

  /**
   * Writes a new record (with its status and idempotency index entries, and
   * an inline body) in one atomic batch, synced to disk before this resolves
   * (concurrent submissions share the fsync). Exchange ids are
   * fresh UUIDs chosen by the service, so no lock is needed.
   */
  private async insert(input: NewExchange, fingerprint: string | undefined, indexKey: string | undefined, body: Buffer | undefined): Promise<ExchangeRecord> {
    if (this.unfinishedCache.has(input.id)) throw new AgentError('ERR_CONFLICT', `exchange ${input.id} already exists`);
    const now = new Date().toISOString();
    const record: ExchangeRecord = {
      ...input,
      status: 'queued',
      statusAt: now,
      attempts: 0,
      createdAt: now,
      updatedAt: now,
      ...(fingerprint ? { requestFingerprint: fingerprint } : {}),
      ...(body ? { inline: true } : {}),
    };
    const ops: BatchOp[] = [
      { type: 'put', key: record.id, value: record, sublevel: this.records },
      { type: 'put', key: statusKey(record), value: record.id, sublevel: this.byStatus },
    ];
    if (indexKey) ops.push(this.idempotency.putOp(indexKey, record.id));
    if (body) ops.push({ type: 'put', key: record.id, value: body, sublevel: this.bodies });
    // Synced either way: the API answers 202 once this resolves, and an outbox body without its record is
    // deleted at start-up (recover), so a record lost to a power cut would lose an acknowledged exchange.
    await this.db.writeSynced(ops);
    this.remember(record, true);
    if (body) this.bodyCache.set(record.id, body);
    return record;
  }

  /** One record, or undefined. */
  async get(id: string): Promise<ExchangeRecord | undefined> {
    return this.unfinishedCache.get(id) ?? this.records.get(id);
  }

  /** An unfinished record from memory, without a read (undefined when not cached). */
  peek(id: string): ExchangeRecord | undefined {
    return this.unfinishedCache.get(id);
  }

  /** The inline body of an unfinished exchange when it is held in memory (the one the API stored), else undefined. */
  cachedBody(id: string): Buffer | undefined {
    return this.bodyCache.get(id);
  }

  /** The inline body of an unfinished exchange, or undefined. */
  async body(id: string): Promise<Buffer | undefined> {
    const cached = this.bodyCache.get(id);
    if (cached) return cached;
    const stored = await this.bodies.get(id);
    if (stored && this.unfinishedCache.has(id)) this.bodyCache.set(id, stored);
    return stored;
  }

  /**
   * Moves an exchange to `status` with extra fields; refuses transitions the
   * life cycle does not allow (e.g. out of a final state) with a TypeError.
   */
  async transition(id: string, status: ExchangeStatus, patch: ExchangePatch = {}): Promise<ExchangeRecord> {
    return (await this.transitionMany([{ id, status, patch }]))[0] as ExchangeRecord;
  }

  /**
   * Several transitions (of different exchanges) in one atomic batch, e.g.
   * every exchange of a batch envelope; the same checks as {@link transition},
   * and nothing is written when one of them is refused. An inline body goes
   * with its exchange's final state.
   */
  async transitionMany(changes: readonly Transition[]): Promise<ExchangeRecord[]> {
    return this.mutex.run(async () => {
      const now = new Date().toISOString();
      // An array batch: abstract-level's chained batch costs about twice as much per operation.
      const ops: BatchOp[] = [];
      const out: ExchangeRecord[] = [];
      for (const { id, status, patch = {} } of changes) {
        const current = this.unfinishedCache.get(id) ?? (await this.records.get(id));
        if (!current) throw new AgentError('ERR_NOT_FOUND', `no exchange ${id}`);
        if (current.status !== status && !NEXT[current.status].includes(status)) {
          throw new TypeError(`exchange ${id} cannot go from ${current.status} to ${status}`);
        }
        const next: ExchangeRecord = {
          ...current,
          ...withLedger(current, patch),
          status,
          updatedAt: now,
          statusAt: current.status === status ? (current.statusAt ?? now) : now,
        };
        if (status !== 'queued') delete next.nextAttemptAt;
        out.push(next);
        // `sending` stays in memory (see `durable`).
        if (status === 'sending') continue;
        ops.push({ type: 'put', key: id, value: next, sublevel: this.records });
        ops.push({ type: 'del', key: this.storedStatusKey(current), sublevel: this.byStatus });
        ops.push({ type: 'put', key: statusKey(next), value: id, sublevel: this.byStatus });
        if (next.inline && (status === 'delivered' || status === 'failed')) ops.push({ type: 'del', key: id, sublevel: this.bodies });
      }
      await this.db.write(ops);
      for (const next of out) this.remember(next, next.status !== 'sending');
      return out;
    });
  }

  /** Changes fields of an exchange without changing its status. */
  async update(id: string, patch: ExchangePatch): Promise<ExchangeRecord> {
    return (await this.updateMany([{ id, patch }]))[0] as ExchangeRecord;
  }

  /** Changes fields of several exchanges in one atomic batch, without changing their status. */
  async updateMany(changes: ReadonlyArray<{ id: string; patch: ExchangePatch }>): Promise<ExchangeRecord[]> {
    return this.mutex.run(async () => {
      const now = new Date().toISOString();
      const ops: BatchOp[] = [];
      const out: ExchangeRecord[] = [];
      for (const { id, patch } of changes) {
        const current = this.unfinishedCache.get(id) ?? (await this.records.get(id));
        if (!current) throw new AgentError('ERR_NOT_FOUND', `no exchange ${id}`);
        const next: ExchangeRecord = { ...current, ...withLedger(current, patch), updatedAt: now };
        ops.push({ type: 'put', key: id, value: this.stored(next), sublevel: this.records });
        out.push(next);
      }
      await this.db.write(ops);
      for (const next of out) this.remember(next, false);
      return out;
    });
  }

  /**
   * At most `limit` records: of one status, the ones that entered it most
   * recently first (read from the status index); otherwise newest first.
   */
  async list(options: { status?: ExchangeStatus; limit?: number } = {}): Promise<ExchangeRecord[]> {
    const limit = options.limit ?? 100;
    if (options.status === 'queued' || options.status === 'sending') {
      // Every unfinished exchange is in memory, with its current status (`sending` is never written).
      const status = options.status;
      return [...this.unfinishedCache.values()]
        .filter((r) => r.status === status)
        .sort((a, b) => statusKey(b).localeCompare(statusKey(a)))
        .slice(0, limit);
    }
    if (options.status) return this.byStatusOrder(options.status, { reverse: true, limit });
    const out: ExchangeRecord[] = [];
    for await (const value of this.records.values()) out.push(value);
    out.sort((a, b) => b.createdAt.localeCompare(a.createdAt));
    return out.slice(0, limit);
  }

  /** How many exchanges are not yet final (all of them are held in memory from `open` on; for metrics). */
  async countUnfinished(): Promise<number> {
    return this.unfinishedCache.size;
  }

  /** Exchanges not yet final (to resume after a restart), oldest first. */
  async unfinished(): Promise<ExchangeRecord[]> {
    // All of them are in memory from `open` on, with their current status.
    return [...this.unfinishedCache.values()].sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  private async byStatusOrder(status: ExchangeStatus, o: { reverse?: boolean; limit?: number }): Promise<ExchangeRecord[]> {
    const out: ExchangeRecord[] = [];
    for await (const id of this.byStatus.values({
      gt: `${status}!`,
      lt: `${status}"`,
      reverse: o.reverse ?? false,
      ...(o.limit !== undefined ? { limit: o.limit } : {}),
    })) {
      const r = await this.get(id);
      if (r && r.status === status) out.push(r);
    }
    return out;
  }
}
