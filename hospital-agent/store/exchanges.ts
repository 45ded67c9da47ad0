import { createHash, timingSafeEqual } from 'node:crypto';
import { Level } from 'level';
import { AgentError } from '../errors.ts';
import { Mutex } from './mutex.ts';

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
  consentId: string;
  purpose: string;
  contentType: string;
  /** Scope items the payload needs (FHIR resource types, ImagingStudy or Binary), re-checked at send time. */
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
  ledger?: { sent?: string; receipt?: string; failed?: string; charges?: string[] };
  /** Hash of what the request asked for, to detect a reused Idempotency-Key. */
  requestFingerprint: string;
}

/** A request for a patient's records, as the asking or the holding hospital keeps it. */
export interface RecordsRequest {
  id: string;
  direction: 'outgoing' | 'incoming';
  /** The other hospital: the holder for an outgoing request, the requester for an incoming one. */
  peer: string;
  purpose: string;
  scope: string[];
  status: 'sent' | 'accepted' | 'refused' | 'answered';
  createdAt: string;
  updatedAt: string;
  /** Incoming only: the patient as the requester named them (kept inside this hospital, for the EHR). */
  patientId?: string;
  /** Incoming and accepted: the local consent that covers the release. */
  consentId?: string;
  /** Refused: why (an ERR_CONSENT_* code). */
  code?: string;
}

/** Fields the engine may change; `ledger` is merged into the stored bookkeeping, not replaced. */
export type ExchangePatch = Partial<Pick<ExchangeRecord, 'failure' | 'receipt' | 'nextAttemptAt' | 'attempts' | 'headerHash' | 'ledger'>>;

/** Fields a caller supplies to create an exchange. */
export type NewExchange = Omit<ExchangeRecord, 'status' | 'attempts' | 'createdAt' | 'updatedAt' | 'requestFingerprint' | 'receipt' | 'headerHash' | 'ledger' | 'failure' | 'nextAttemptAt'>;

/** Digest of the parts of a request that an idempotent retry must repeat. */
export function requestFingerprint(x: Pick<NewExchange, 'to' | 'patientHash' | 'consentId' | 'purpose' | 'contentType' | 'contentSha256'>): string {
  return createHash('sha256').update(JSON.stringify([x.to, x.patientHash, x.consentId, x.purpose, x.contentType, x.contentSha256])).digest('hex');
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

function idempotencyIndexKey(principal: string, key: string): string {
  return createHash('sha256').update(`${principal}\u0000${key}`).digest('hex');
}

/**
 * Outgoing exchanges in the agent's own LevelDB (`<dataDir>/state`): records
 * by id and an Idempotency-Key index, written in one batch so a crash never
 * leaves one without the other. Every change goes through one mutex, so
 * concurrent API calls and the engine see transitions in order.
 */
export class ExchangeStore {
  private readonly db: Level<string, string>;
  private readonly records;
  /** Index `status!statusAt!id`, so listing one status (e.g. what is queued) never scans every exchange. */
  private readonly byStatus;
  private readonly idempotency;
  private readonly issued;
  private readonly requests;
  private readonly mutex = new Mutex();
  /**
   * Unfinished exchanges as last written, so the engine's many reads of the
   * exchanges it is working on skip LevelDB. Every write goes through this
   * store, so the copy is never stale; final records leave it.
   */
  private readonly unfinishedCache = new Map<string, ExchangeRecord>();

  private remember(record: ExchangeRecord): void {
    if (record.status === 'delivered' || record.status === 'failed') this.unfinishedCache.delete(record.id);
    else this.unfinishedCache.set(record.id, record);
  }

  constructor(path: string) {
    this.db = new Level<string, string>(path);
    this.records = this.db.sublevel<string, ExchangeRecord>('exchanges', { valueEncoding: 'json' });
    this.byStatus = this.db.sublevel<string, string>('by-status', { valueEncoding: 'utf8' });
    this.idempotency = this.db.sublevel<string, string>('idempotency', { valueEncoding: 'utf8' });
    this.issued = this.db.sublevel<string, unknown>('issued-receipts', { valueEncoding: 'json' });
    this.requests = this.db.sublevel<string, RecordsRequest>('requests', { valueEncoding: 'json' });
  }

  /** Stores a records request (outgoing or incoming). */
  async putRequest(request: RecordsRequest): Promise<void> {
    await this.mutex.run(() => this.requests.put(request.id, request));
  }

  /** One records request, or undefined. */
  async getRequest(id: string): Promise<RecordsRequest | undefined> {
    return this.requests.get(id);
  }

  /** Records requests, newest first. */
  async listRequests(direction?: 'outgoing' | 'incoming'): Promise<RecordsRequest[]> {
    const out: RecordsRequest[] = [];
    for await (const r of this.requests.values()) if (!direction || r.direction === direction) out.push(r);
    return out.sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  }

  /** The delivered receipt this agent issued for `from`'s exchange `id`, if any (to answer a resend). */
  async issuedReceipt(from: string, id: string): Promise<unknown> {
    return this.issued.get(`${from}!${id}`);
  }

  /** Keeps a delivered receipt this agent issued, so a resent exchange is answered, not delivered twice. */
  async saveIssuedReceipt(from: string, id: string, receipt: unknown): Promise<void> {
    await this.issued.put(`${from}!${id}`, receipt);
  }

  /** Opens the database. */
  async open(): Promise<void> {
    await this.db.open();
  }

  /** Closes the database. */
  async close(): Promise<void> {
    await this.db.close();
  }

  /**
   * Records a new queued exchange. With an idempotency key already used by
   * the same principal, returns the earlier record (`created: false`) when the
   * request matches, and throws ERR_CONFLICT when it differs.
   */
  async create(input: NewExchange, idempotency?: { principal: string; key: string }): Promise<{ record: ExchangeRecord; created: boolean }> {
    return this.mutex.run(async () => {
      const fingerprint = requestFingerprint(input);
      const indexKey = idempotency ? idempotencyIndexKey(idempotency.principal, idempotency.key) : undefined;
      if (indexKey) {
        const existingId = await this.idempotency.get(indexKey);
        if (existingId !== undefined) {
          const existing = await this.records.get(existingId);
          if (existing) {
            const same = timingSafeEqual(Buffer.from(existing.requestFingerprint, 'hex'), Buffer.from(fingerprint, 'hex'));
            if (!same) throw new AgentError('ERR_CONFLICT', 'Idempotency-Key was already used for a different request');
            return { record: existing, created: false };
          }
        }
      }
      if ((await this.records.get(input.id)) !== undefined) throw new AgentError('ERR_CONFLICT', `exchange ${input.id} already exists`);
      const now = new Date().toISOString();
      const record: ExchangeRecord = { ...input, status: 'queued', statusAt: now, attempts: 0, createdAt: now, updatedAt: now, requestFingerprint: fingerprint };
      // One atomic batch across both sublevels.
      const chained = this.db.batch();
      chained.put(record.id, record, { sublevel: this.records });
      chained.put(statusKey(record), record.id, { sublevel: this.byStatus });
      if (indexKey) chained.put(indexKey, record.id, { sublevel: this.idempotency });
      await chained.write();
      this.remember(record);
      return { record, created: true };
    });
  }

  /** One record, or undefined. */
  async get(id: string): Promise<ExchangeRecord | undefined> {
    return this.unfinishedCache.get(id) ?? this.records.get(id);
  }

  /**
   * Moves an exchange to `status` with extra fields; refuses transitions the
   * life cycle does not allow (e.g. out of a final state) with a TypeError.
   */
  async transition(id: string, status: ExchangeStatus, patch: ExchangePatch = {}): Promise<ExchangeRecord> {
    return this.mutex.run(async () => {
      const current = await this.get(id);
      if (!current) throw new AgentError('ERR_NOT_FOUND', `no exchange ${id}`);
      if (current.status !== status && !NEXT[current.status].includes(status)) {
        throw new TypeError(`exchange ${id} cannot go from ${current.status} to ${status}`);
      }
      const now = new Date().toISOString();
      const next: ExchangeRecord = { ...current, ...withLedger(current, patch), status, updatedAt: now, statusAt: current.status === status ? (current.statusAt ?? now) : now };
      if (status !== 'queued') delete next.nextAttemptAt;
      const batch = this.db.batch();
      batch.put(id, next, { sublevel: this.records });
      batch.del(statusKey(current), { sublevel: this.byStatus });
      batch.put(statusKey(next), id, { sublevel: this.byStatus });
      await batch.write();
      this.remember(next);
      return next;
    });
  }

  /** Changes fields of an exchange without changing its status. */
  async update(id: string, patch: ExchangePatch): Promise<ExchangeRecord> {
    return this.mutex.run(async () => {
      const current = await this.get(id);
      if (!current) throw new AgentError('ERR_NOT_FOUND', `no exchange ${id}`);
      const next: ExchangeRecord = { ...current, ...withLedger(current, patch), updatedAt: new Date().toISOString() };
      await this.records.put(id, next);
      this.remember(next);
      return next;
    });
  }

  /**
   * At most `limit` records: of one status, the ones that entered it most
   * recently first (read from the status index); otherwise newest first.
   */
  async list(options: { status?: ExchangeStatus; limit?: number } = {}): Promise<ExchangeRecord[]> {
    const limit = options.limit ?? 100;
    if (options.status) return this.byStatusOrder(options.status, { reverse: true, limit });
    const out: ExchangeRecord[] = [];
    for await (const value of this.records.values()) out.push(value);
    out.sort((a, b) => b.createdAt.localeCompare(a.createdAt));
    return out.slice(0, limit);
  }

  /** How many exchanges are not yet final, counted from the status index alone (for metrics). */
  async countUnfinished(): Promise<number> {
    let n = 0;
    for (const status of ['queued', 'sending'] as const) {
      for await (const _key of this.byStatus.keys({ gt: `${status}!`, lt: `${status}"` })) n += 1;
    }
    return n;
  }

  /** Exchanges not yet final (to resume after a restart), oldest first. */
  async unfinished(): Promise<ExchangeRecord[]> {
    const all = [...(await this.byStatusOrder('queued', {})), ...(await this.byStatusOrder('sending', {}))];
    return all.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  private async byStatusOrder(status: ExchangeStatus, o: { reverse?: boolean; limit?: number }): Promise<ExchangeRecord[]> {
    const out: ExchangeRecord[] = [];
    for await (const id of this.byStatus.values({ gt: `${status}!`, lt: `${status}"`, reverse: o.reverse ?? false, ...(o.limit !== undefined ? { limit: o.limit } : {}) })) {
      const r = await this.get(id);
      if (r && r.status === status) out.push(r);
    }
    return out;
  }
}
