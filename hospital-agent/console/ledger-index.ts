// One job: an in-memory index of the ledger that the console and the audit API query, kept up to date from the feeds' heads.
import type { EntryType, Ledger, StoredEntry } from '../../ledger/index.ts';

/** One ledger entry as the audit search sees it (no body beyond the fields it filters on). */
export interface IndexedEntry {
  feed: string;
  seq: number;
  ts: string;
  type: EntryType;
  exchange: string | undefined;
  consent: string | undefined;
  /** The claim or prescription the entry is about (`claim.*` and a claim's benefit charge; `prescription.*`). */
  subject: string | undefined;
  /** The keyed patient hash the entry carries (exchange.sent, consent.granted). */
  patient: string | undefined;
  /** The other hospital the entry names (to, from, peer, the other party of a charge). */
  counterpart: string | undefined;
  failed: boolean;
}

/** A charge of an exchange (minor units). */
export interface ExchangeCharge {
  kind: string;
  payer: string;
  payee: string;
  amount: number;
  currency: string;
}

/** What an exchange looks like from this hospital's own feed. */
export type ExchangeStatus = 'pending' | 'delivered' | 'failed' | 'received';

/** One exchange of this hospital, folded from its own feed's entries. */
export interface ExchangeRow {
  id: string;
  ts: string;
  direction: 'sent' | 'received';
  counterparty: string;
  status: ExchangeStatus;
  purpose: string | undefined;
  consent: string | undefined;
  patient: string | undefined;
  contentType: string;
  bytes: number;
  /** When the receipt or failure was logged. */
  settledAt: string | undefined;
  reason: string | undefined;
  /** The entry that records the release or the arrival (the proof reference). */
  ref: { feed: string; seq: number };
  charges: ExchangeCharge[];
}

/** One consent of this hospital. */
export interface ConsentRow {
  id: string;
  grantedAt: string;
  patient: string;
  grantees: string[];
  purposes: string[];
  scope: string[];
  validFrom: string;
  validUntil: string | undefined;
  revokedAt: string | undefined;
  revocationReason: string | undefined;
  ref: { feed: string; seq: number };
}

/** A claim's status as its own feed tells it: `sent` until the insurer's first answer, then the latest answer (a final one stays). */
export type ClaimRowStatus = 'sent' | 'queued' | 'complete' | 'partial' | 'error';

/** One claim of this member, folded from its own feed (claim.submitted or claim.received, then claim.responded). */
export interface ClaimRow {
  id: string;
  /** When it was submitted (outgoing) or received (incoming). */
  ts: string;
  direction: 'outgoing' | 'incoming';
  /** The insurer of an outgoing claim, the hospital of an incoming one. */
  counterparty: string;
  status: ClaimRowStatus;
  /** Claimed, minor units. */
  amount: number;
  currency: string;
  /** Paid by the answer that set the status, minor units. */
  paid: number | undefined;
  /** When the answer that set the status was logged. */
  answeredAt: string | undefined;
  ref: { feed: string; seq: number };
}

/** One prescription Task this agent issued, folded from its own feed's `prescription.*` entries. */
export interface PrescriptionRow {
  id: string;
  ts: string;
  status: 'ready' | 'in-progress' | 'completed' | 'cancelled';
  pharmacy: string | undefined;
  acceptedAt: string | undefined;
  /** When it was completed or cancelled. */
  endedAt: string | undefined;
  cancelledBy: string | undefined;
  transitions: number;
  ref: { feed: string; seq: number };
}

/** One `payment.charged` of any feed (for settlement statements). */
export interface ChargeRow {
  ts: string;
  charge: string;
  exchange: string;
  payer: string;
  payee: string;
  amount: number;
  currency: string;
}

/** Where an entry is: its feed and sequence number. */
export interface EntryRef {
  feed: string;
  seq: number;
}

/** A keyset position: everything strictly older than it comes next (newest first). */
export interface Cursor {
  ts: string;
  key: string;
}

/** A page of a newest-first listing and the cursor of the next one, if any. */
export interface Page<T> {
  items: T[];
  next: Cursor | undefined;
}

const entryKey = (e: { feed: string; seq: number }): string => `${e.feed}\u0000${String(e.seq).padStart(12, '0')}`;

/** Compares by (ts, key): the order every listing uses (reversed: newest first). */
function compare(aTs: string, aKey: string, bTs: string, bKey: string): number {
  if (aTs !== bTs) return aTs < bTs ? -1 : 1;
  return aKey < bKey ? -1 : aKey > bKey ? 1 : 0;
}

/** The first index whose (ts, key) is at or after the cursor, in an ascending array (binary search). */
function lowerBound<T>(rows: readonly T[], at: Cursor, tsOf: (r: T) => string, keyOf: (r: T) => string): number {
  let lo = 0;
  let hi = rows.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const r = rows[mid] as T;
    if (compare(tsOf(r), keyOf(r), at.ts, at.key) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Walks an ascending array newest first from before `after` (or the end),
 * collecting up to `limit` rows that pass `keep`; the next cursor is the last
 * row kept when more may follow. Cost: the rows examined, never an offset.
 */
function pageDescending<T>(
  rows: readonly T[],
  keep: (r: T) => boolean,
  limit: number,
  after: Cursor | undefined,
  tsOf: (r: T) => string,
  keyOf: (r: T) => string,
  floor = 0,
): Page<T> {
  const items: T[] = [];
  let i = (after ? lowerBound(rows, after, tsOf, keyOf) : rows.length) - 1;
  for (; i >= floor; i--) {
    const r = rows[i] as T;
    if (!keep(r)) continue;
    if (items.length === limit) return { items, next: { ts: tsOf(items[limit - 1] as T), key: keyOf(items[limit - 1] as T) } };
    items.push(r);
  }
  return { items, next: undefined };
}

const cursorTs = (r: IndexedEntry): string => r.ts;
const cursorKey = (r: IndexedEntry): string => entryKey(r);
const exchangeTs = (r: ExchangeRow): string => r.ts;
const exchangeKey = (r: ExchangeRow): string => r.id;
const rowTs = (r: { ts: string }): string => r.ts;
const rowKey = (r: { id: string }): string => r.id;

/** One line of {@link LedgerIndex.settlement} (minor units). */
export interface SettlementViewLine {
  counterparty: string;
  currency: string;
  owes: number;
  owed: number;
  charges: number;
}

/** A settlement statement (the shape of engine/payments.ts `SettlementStatement`). */
export interface SettlementView {
  hospital: string;
  period: { start: string; end: string };
  lines: SettlementViewLine[];
  totals: Array<{ currency: string; owes: number; owed: number; net: number }>;
  unreplicated: string[];
}

/** Bounds of a time filter: ts >= from and ts < to (ISO strings, as the ledger writes them). */
export interface Period {
  from?: string | undefined;
  to?: string | undefined;
}

/** A filter of the audit search (see {@link LedgerIndex.searchEntries}). */
export interface EntryFilter extends Period {
  patient?: string;
  /** An exchange id, consent id, claim id, prescription id or `feed/seq` entry id. */
  entity?: string;
  /** A hospital id that is the feed or the counterpart. */
  agent?: string;
  failed?: boolean;
  types?: ReadonlySet<EntryType>;
}

/** A filter of the exchange listing. */
export interface ExchangeFilter extends Period {
  counterparty?: string;
  direction?: 'sent' | 'received';
  status?: ExchangeStatus;
  purpose?: string;
  patient?: string;
}

/**
 * The console's and the audit API's view of the ledger: every entry of every
 * feed this agent holds (compact rows, for ITI-81-style search), this
 * hospital's exchanges folded from its own feed (sent -> receipt/failure ->
 * charges) and its consents. {@link refresh} reads only the entries appended
 * since the last call, so each query costs the new entries and the rows it
 * examines, not the ledger's size. Lists are keyset-paginated newest first.
 */
export class LedgerIndex {
  private readonly entries: IndexedEntry[] = [];
  private readonly exchanges = new Map<string, ExchangeRow>();
  private exchangeOrder: ExchangeRow[] = [];
  private readonly consents = new Map<string, ConsentRow>();
  private readonly charges: ChargeRow[] = [];
  private readonly released = new Map<string, ExchangeRow[]>();
  /** This member's claims and prescriptions (own feed), in ledger order, which is time order within one feed. */
  private readonly claimRows = new Map<string, ClaimRow>();
  private readonly claimOrder: ClaimRow[] = [];
  private readonly rxRows = new Map<string, PrescriptionRow>();
  private readonly rxOrder: PrescriptionRow[] = [];
  /** `claim:<id>` / `prescription:<id>` -> the entries (any feed) that name it, in the order read. */
  private readonly subjects = new Map<string, EntryRef[]>();
  private chargesUnsorted = false;
  private readonly seen = new Map<string, number>();
  private refreshing: Promise<void> | undefined;

  constructor(
    private readonly ledger: Ledger,
    /** This hospital (its own feed). */
    readonly self: string,
  ) {}

  /** Reads every entry appended (or replicated) since the last refresh; concurrent callers share one pass. */
  refresh(): Promise<void> {
    this.refreshing ??= this.catchUp().finally(() => (this.refreshing = undefined));
    return this.refreshing;
  }

  private async catchUp(): Promise<void> {
    const added: IndexedEntry[] = [];
    let exchangesAdded = false;
    const claimsBefore = this.claimOrder.length;
    const rxBefore = this.rxOrder.length;
    for (const feed of this.ledger.feeds()) {
      const head = this.ledger.head(feed);
      const done = this.seen.get(feed) ?? -1;
      if (!head || head.seq <= done) continue;
      for await (const stored of this.ledger.entries(feed, { from: done + 1, to: head.seq })) {
        const subject = subjectOf(stored);
        added.push(indexEntry(stored, subject));
        if (subject) {
          const refs = this.subjects.get(subject) ?? [];
          refs.push({ feed: stored.entry.feed, seq: stored.entry.seq });
          this.subjects.set(subject, refs);
        }
        if (stored.entry.type === 'payment.charged') {
          const c = stored.entry.body as Omit<ChargeRow, 'ts'>;
          if ((this.charges.at(-1)?.ts ?? '') > stored.entry.ts) this.chargesUnsorted = true;
          this.charges.push({
            ts: stored.entry.ts,
            charge: c.charge,
            exchange: c.exchange,
            payer: c.payer,
            payee: c.payee,
            amount: c.amount,
            currency: c.currency,
          });
        }
        if (feed === this.self && this.foldOwn(stored)) exchangesAdded = true;
        this.seen.set(feed, stored.entry.seq);
      }
    }
    if (added.length > 0) {
      const last = this.entries.at(-1);
      added.sort((a, b) => compare(a.ts, entryKey(a), b.ts, entryKey(b)));
      const first = added[0] as IndexedEntry;
      const inOrder = !last || compare(last.ts, entryKey(last), first.ts, entryKey(first)) < 0;
      for (const e of added) this.entries.push(e);
      if (!inOrder) this.entries.sort((a, b) => compare(a.ts, entryKey(a), b.ts, entryKey(b)));
    }
    if (this.chargesUnsorted) {
      this.charges.sort((a, b) => (a.ts < b.ts ? -1 : a.ts > b.ts ? 1 : 0));
      this.chargesUnsorted = false;
    }
    // Keyset pages need (ts, id) order; entries of one millisecond come in ledger order.
    if (this.claimOrder.length !== claimsBefore) this.claimOrder.sort((a, b) => compare(a.ts, a.id, b.ts, b.id));
    if (this.rxOrder.length !== rxBefore) this.rxOrder.sort((a, b) => compare(a.ts, a.id, b.ts, b.id));
    if (exchangesAdded) {
      // New exchanges are appended in ledger order, which is time order within one feed.
      this.exchangeOrder = [...this.exchanges.values()].sort((a, b) => compare(a.ts, a.id, b.ts, b.id));
    }
  }

  /** Folds one entry of the own feed into the exchanges and consents; true when it created an exchange. */
  private foldOwn(stored: StoredEntry): boolean {
    const e = stored.entry;
    const b = e.body as Record<string, unknown>;
    const ref = { feed: e.feed, seq: e.seq };
    switch (e.type) {
      case 'exchange.sent':
      case 'exchange.received': {
        const id = b['exchange'] as string;
        if (this.exchanges.has(id)) return false;
        const sent = e.type === 'exchange.sent';
        const row: ExchangeRow = {
          id,
          ts: e.ts,
          direction: sent ? 'sent' : 'received',
          counterparty: (sent ? b['to'] : b['from']) as string,
          status: sent ? 'pending' : 'received',
          purpose: b['purpose'] as string | undefined,
          consent: b['consent'] as string | undefined,
          patient: b['patient'] as string | undefined,
          contentType: b['contentType'] as string,
          bytes: b['bytes'] as number,
          settledAt: undefined,
          reason: undefined,
          ref,
          charges: [],
        };
        this.exchanges.set(id, row);
        if (row.consent !== undefined) {
          const list = this.released.get(row.consent) ?? [];
          list.push(row);
          this.released.set(row.consent, list);
        }
        return true;
      }
      case 'receipt':
      case 'exchange.failed': {
        const x = this.exchanges.get(b['exchange'] as string);
        if (!x || x.direction !== 'sent') return false;
        x.status = e.type === 'receipt' && b['disposition'] === 'delivered' ? 'delivered' : 'failed';
        x.settledAt = e.ts;
        x.reason = b['reason'] as string | undefined;
        return false;
      }
      case 'payment.charged': {
        const x = this.exchanges.get(b['exchange'] as string);
        x?.charges.push({
          kind: b['kind'] as string,
          payer: b['payer'] as string,
          payee: b['payee'] as string,
          amount: b['amount'] as number,
          currency: b['currency'] as string,
        });
        return false;
      }
      case 'consent.granted': {
        const id = b['consent'] as string;
        this.consents.set(id, {
          id,
          grantedAt: e.ts,
          patient: b['patient'] as string,
          grantees: [...((b['grantees'] as string[] | undefined) ?? [])],
          purposes: [...((b['purposes'] as string[] | undefined) ?? [])],
          scope: [...((b['scope'] as string[] | undefined) ?? [])],
          validFrom: (b['validFrom'] as string | undefined) ?? e.ts,
          validUntil: b['validUntil'] as string | undefined,
          revokedAt: undefined,
          revocationReason: undefined,
          ref,
        });
        return false;
      }
      case 'claim.submitted':
      case 'claim.received': {
        const id = b['claim'] as string;
        if (this.claimRows.has(id)) return false;
        const out = e.type === 'claim.submitted';
        const row: ClaimRow = {
          id,
          ts: e.ts,
          direction: out ? 'outgoing' : 'incoming',
          counterparty: (out ? b['insurer'] : b['hospital']) as string,
          // An insurer files a claim as queued (claims/service.ts) and answers so at once.
          status: out ? 'sent' : 'queued',
          amount: b['amount'] as number,
          currency: b['currency'] as string,
          paid: undefined,
          answeredAt: undefined,
          ref,
        };
        this.claimRows.set(id, row);
        this.claimOrder.push(row);
        return false;
      }
      case 'claim.responded': {
        const row = this.claimRows.get(b['claim'] as string);
        // A final answer stays final; a late `queued` is only evidence (as the claim store keeps it).
        if (!row || (row.status !== 'sent' && row.status !== 'queued')) return false;
        row.status = b['outcome'] as ClaimRowStatus;
        row.paid = b['amount'] as number;
        row.answeredAt = e.ts;
        return false;
      }
      case 'prescription.issued': {
        const id = b['prescription'] as string;
        if (this.rxRows.has(id)) return false;
        const row: PrescriptionRow = {
          id,
          ts: e.ts,
          status: 'ready',
          pharmacy: undefined,
          acceptedAt: undefined,
          endedAt: undefined,
          cancelledBy: undefined,
          transitions: 1,
          ref,
        };
        this.rxRows.set(id, row);
        this.rxOrder.push(row);
        return false;
      }
      case 'prescription.accepted':
      case 'prescription.rejected':
      case 'prescription.completed':
      case 'prescription.cancelled': {
        const row = this.rxRows.get(b['prescription'] as string);
        if (!row) return false;
        row.transitions += 1;
        if (e.type === 'prescription.accepted') Object.assign(row, { status: 'in-progress', pharmacy: b['pharmacy'], acceptedAt: e.ts });
        else if (e.type === 'prescription.rejected') Object.assign(row, { status: 'ready', pharmacy: undefined, acceptedAt: undefined });
        else if (e.type === 'prescription.completed') Object.assign(row, { status: 'completed', pharmacy: b['pharmacy'], endedAt: e.ts });
        else Object.assign(row, { status: 'cancelled', endedAt: e.ts, cancelledBy: b['by'] });
        return false;
      }
      case 'consent.revoked': {
        const c = this.consents.get(b['consent'] as string);
        if (c && c.revokedAt === undefined) {
          c.revokedAt = e.ts;
          c.revocationReason = b['reason'] as string | undefined;
        }
        return false;
      }
      default:
        return false;
    }
  }

  /** Entries matching `filter`, newest first, `limit` per page after `after`. */
  searchEntries(filter: EntryFilter, limit: number, after?: Cursor): Page<IndexedEntry> {
    const keep = (r: IndexedEntry): boolean =>
      (filter.to === undefined || r.ts < filter.to) &&
      (filter.patient === undefined || r.patient === filter.patient) &&
      (filter.entity === undefined ||
        r.exchange === filter.entity ||
        r.consent === filter.entity ||
        r.subject === filter.entity ||
        `${r.feed}/${r.seq}` === filter.entity) &&
      (filter.agent === undefined || r.feed === filter.agent || r.counterpart === filter.agent) &&
      (filter.failed === undefined || r.failed === filter.failed) &&
      (filter.types === undefined || filter.types.has(r.type));
    const floor = filter.from === undefined ? 0 : lowerBound(this.entries, { ts: filter.from, key: '' }, cursorTs, cursorKey);
    const start = filter.to !== undefined && (!after || filter.to < after.ts) ? { ts: filter.to, key: '' } : after;
    return pageDescending(this.entries, keep, limit, start, cursorTs, cursorKey, floor);
  }

  /** This hospital's exchanges matching `filter`, newest first. */
  searchExchanges(filter: ExchangeFilter, limit: number, after?: Cursor): Page<ExchangeRow> {
    const keep = (r: ExchangeRow): boolean =>
      (filter.counterparty === undefined || r.counterparty === filter.counterparty) &&
      (filter.direction === undefined || r.direction === filter.direction) &&
      (filter.status === undefined || r.status === filter.status) &&
      (filter.purpose === undefined || r.purpose === filter.purpose) &&
      (filter.patient === undefined || r.patient === filter.patient);
    const floor = filter.from === undefined ? 0 : lowerBound(this.exchangeOrder, { ts: filter.from, key: '' }, exchangeTs, exchangeKey);
    const start = filter.to !== undefined && (!after || filter.to < after.ts) ? { ts: filter.to, key: '' } : after;
    return pageDescending(this.exchangeOrder, keep, limit, start, exchangeTs, exchangeKey, floor);
  }

  /** One exchange of this hospital. */
  exchange(id: string): ExchangeRow | undefined {
    return this.exchanges.get(id);
  }

  /**
   * The entries of any feed held that name claim or prescription `id`
   * (`claim.*` and the claim's benefit charge; `prescription.*`), oldest
   * first within each feed.
   */
  entriesOf(kind: 'claim' | 'prescription', id: string): EntryRef[] {
    return [...(this.subjects.get(`${kind}:${id}`) ?? [])];
  }

  /** This member's claims passing `keep`, newest first, `limit` per page after `after`. */
  searchClaims(keep: (r: ClaimRow) => boolean, limit: number, after?: Cursor): Page<ClaimRow> {
    return pageDescending(this.claimOrder, keep, limit, after, rowTs, rowKey);
  }

  /** Every claim of this member, oldest first (for totals over a filtered set). */
  allClaims(): readonly ClaimRow[] {
    return this.claimOrder;
  }

  /** One claim of this member. */
  claim(id: string): ClaimRow | undefined {
    return this.claimRows.get(id);
  }

  /** The prescriptions this agent issued passing `keep`, newest first, `limit` per page after `after`. */
  searchPrescriptions(keep: (r: PrescriptionRow) => boolean, limit: number, after?: Cursor): Page<PrescriptionRow> {
    return pageDescending(this.rxOrder, keep, limit, after, rowTs, rowKey);
  }

  /** Every prescription this agent issued, oldest first (for counts). */
  allPrescriptions(): readonly PrescriptionRow[] {
    return this.rxOrder;
  }

  /** Every exchange released under consent `id`, oldest first. */
  releasesUnder(id: string): ExchangeRow[] {
    return [...(this.released.get(id) ?? [])];
  }

  /** This hospital's consents, newest first, those of one patient hash when given. */
  consentsOf(patient?: string): ConsentRow[] {
    const out = [...this.consents.values()].filter((c) => patient === undefined || c.patient === patient);
    return out.sort((a, b) => (a.grantedAt < b.grantedAt ? 1 : a.grantedAt > b.grantedAt ? -1 : 0));
  }

  /** One consent. */
  consent(id: string): ConsentRow | undefined {
    return this.consents.get(id);
  }

  /** Sent, received and failed exchanges per UTC day for the last `days` days up to `now`. */
  perDay(days: number, now: Date): Array<{ day: string; sent: number; received: number; failed: number }> {
    const out: Array<{ day: string; sent: number; received: number; failed: number }> = [];
    const start = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()) - (days - 1) * 86_400_000;
    const byDay = new Map<string, { day: string; sent: number; received: number; failed: number }>();
    for (let i = 0; i < days; i++) {
      const day = new Date(start + i * 86_400_000).toISOString().slice(0, 10);
      const row = { day, sent: 0, received: 0, failed: 0 };
      out.push(row);
      byDay.set(day, row);
    }
    const from = new Date(start).toISOString();
    const first = lowerBound(this.exchangeOrder, { ts: from, key: '' }, exchangeTs, exchangeKey);
    for (let i = first; i < this.exchangeOrder.length; i++) {
      const x = this.exchangeOrder[i] as ExchangeRow;
      const row = byDay.get(x.ts.slice(0, 10));
      if (!row) continue;
      if (x.status === 'failed') row.failed += 1;
      else if (x.direction === 'sent') row.sent += 1;
      else row.received += 1;
    }
    return out;
  }

  /**
   * What this hospital owes and is owed in [start, end), as
   * engine/payments.ts `settlementStatement` (and `hie-agent settlement`)
   * computes it: every distinct charge of any feed held where it is payer or
   * payee, per counterparty and currency, in minor units; and the
   * counterparties of its exchanges in the period whose feed is not held.
   */
  settlement(start: Date, end: Date): SettlementView {
    // The ledger writes every ts as a UTC ISO string of one length, so string order is time order.
    const from = start.toISOString();
    const to = end.toISOString();
    const seen = new Set<string>();
    const lines = new Map<string, SettlementViewLine>();
    let i = 0;
    let hi = this.charges.length;
    while (i < hi) {
      const mid = (i + hi) >>> 1;
      if ((this.charges[mid] as ChargeRow).ts < from) i = mid + 1;
      else hi = mid;
    }
    for (; i < this.charges.length; i++) {
      const c = this.charges[i] as ChargeRow;
      if (c.ts >= to) break;
      if (seen.has(c.charge) || (c.payer !== this.self && c.payee !== this.self)) continue;
      seen.add(c.charge);
      const counterparty = c.payer === this.self ? c.payee : c.payer;
      const key = `${counterparty}|${c.currency}`;
      const line = lines.get(key) ?? { counterparty, currency: c.currency, owes: 0, owed: 0, charges: 0 };
      if (c.payer === this.self) line.owes += c.amount;
      else line.owed += c.amount;
      line.charges += 1;
      lines.set(key, line);
    }
    const sorted = [...lines.values()].sort((a, b) => a.counterparty.localeCompare(b.counterparty) || a.currency.localeCompare(b.currency));
    const totals = new Map<string, { currency: string; owes: number; owed: number; net: number }>();
    for (const l of sorted) {
      const t = totals.get(l.currency) ?? { currency: l.currency, owes: 0, owed: 0, net: 0 };
      t.owes += l.owes;
      t.owed += l.owed;
      t.net = t.owed - t.owes;
      totals.set(l.currency, t);
    }
    const held = new Set(this.ledger.feeds());
    const partners = new Set<string>();
    const first = lowerBound(this.exchangeOrder, { ts: from, key: '' }, exchangeTs, exchangeKey);
    for (let k = first; k < this.exchangeOrder.length && (this.exchangeOrder[k] as ExchangeRow).ts < to; k++)
      partners.add((this.exchangeOrder[k] as ExchangeRow).counterparty);
    const unreplicated = [...partners].filter((p) => !held.has(p)).sort();
    return { hospital: this.self, period: { start: start.toISOString(), end: end.toISOString() }, lines: sorted, totals: [...totals.values()], unreplicated };
  }

  /** How many entries and exchanges are indexed. */
  size(): { entries: number; exchanges: number; consents: number } {
    return { entries: this.entries.length, exchanges: this.exchanges.size, consents: this.consents.size };
  }
}

/** The claim or prescription an entry is about, as a key of {@link LedgerIndex.entriesOf}'s map. */
function subjectOf(stored: StoredEntry): `${'claim' | 'prescription'}:${string}` | undefined {
  const e = stored.entry;
  const b = e.body as Record<string, unknown>;
  if (e.type.startsWith('claim.') && typeof b['claim'] === 'string') return `claim:${b['claim']}`;
  if (e.type.startsWith('prescription.') && typeof b['prescription'] === 'string') return `prescription:${b['prescription']}`;
  // A claim's benefit is a charge of kind claim whose exchange is the claim id (claims/service.ts).
  if (e.type === 'payment.charged' && b['kind'] === 'claim' && typeof b['exchange'] === 'string') return `claim:${b['exchange']}`;
  return undefined;
}

/** The compact row of one entry. */
function indexEntry(stored: StoredEntry, subject: ReturnType<typeof subjectOf>): IndexedEntry {
  const e = stored.entry;
  const b = e.body as Record<string, unknown>;
  const str = (k: string): string | undefined => (typeof b[k] === 'string' ? (b[k] as string) : undefined);
  let counterpart = str('to') ?? str('from') ?? str('peer');
  if (counterpart === undefined && (e.type === 'payment.charged' || e.type === 'payment.settled')) {
    counterpart = str('payer') !== e.feed ? str('payer') : str('payee');
  }
  return {
    feed: e.feed,
    seq: e.seq,
    ts: e.ts,
    type: e.type,
    exchange: str('exchange'),
    consent: str('consent'),
    subject: subject?.slice(subject.indexOf(':') + 1),
    patient: str('patient'),
    counterpart,
    failed: e.type === 'exchange.failed' || (e.type === 'receipt' && b['disposition'] === 'failed'),
  };
}

/** A cursor as an opaque URL-safe string. */
export function encodeCursor(c: Cursor): string {
  return Buffer.from(`${c.ts}\n${c.key}`, 'utf8').toString('base64url');
}

/** Reads a cursor written by {@link encodeCursor}; undefined when it is not one. */
export function decodeCursor(text: string): Cursor | undefined {
  if (!/^[A-Za-z0-9_-]{1,400}$/.test(text)) return undefined;
  const s = Buffer.from(text, 'base64url').toString('utf8');
  const nl = s.indexOf('\n');
  if (nl < 0) return undefined;
  const ts = s.slice(0, nl);
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/.test(ts)) return undefined;
  return { ts, key: s.slice(nl + 1) };
}
