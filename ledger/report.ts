import { decodeEntry } from './entry.ts';
import { formatAmount } from './money.ts';
import type { BodyOf, Entry } from './schema.ts';
import type { LedgerSource } from './source.ts';

/** Totals of one hospital over a period. */
export interface HospitalReport {
  hospital: string;
  exchanges: { sent: number; received: number; delivered: number; failed: number; cancelled: number; bytesSent: number; bytesReceived: number };
  consents: { granted: number; revoked: number };
  /** Per currency, minor units. Charges are counted once per charge id, whichever feeds log them. */
  charges: { paid: Record<string, number>; earned: Record<string, number> };
  settlements: number;
}

/** A report over every feed of a source. */
export interface LedgerReport {
  from: string | null;
  to: string | null;
  hospitals: HospitalReport[];
  /** Entries that could not be decoded (run verify). */
  skipped: number;
}

function blank(hospital: string): HospitalReport {
  return {
    hospital,
    exchanges: { sent: 0, received: 0, delivered: 0, failed: 0, cancelled: 0, bytesSent: 0, bytesReceived: 0 },
    consents: { granted: 0, revoked: 0 },
    charges: { paid: {}, earned: {} },
    settlements: 0,
  };
}

/**
 * Sums exchanges, consents and charges per hospital for entries with
 * `from <= ts < to`. It reads the entries as stored: run verify first.
 */
export async function buildReport(source: LedgerSource, options: { from?: Date; to?: Date } = {}): Promise<LedgerReport> {
  const from = options.from?.toISOString();
  const to = options.to?.toISOString();
  const rows = new Map<string, HospitalReport>();
  const row = (h: string): HospitalReport => {
    let r = rows.get(h);
    if (!r) rows.set(h, (r = blank(h)));
    return r;
  };
  const charges = new Set<string>();
  let skipped = 0;
  for (const feed of await source.feeds()) {
    row(feed);
    for await (const { bytes } of source.entries(feed)) {
      let e: Entry;
      try {
        e = decodeEntry(bytes).entry;
      } catch {
        skipped += 1;
        continue;
      }
      if ((from && e.ts < from) || (to && e.ts >= to)) continue;
      const r = row(feed);
      switch (e.type) {
        case 'exchange.sent':
          r.exchanges.sent += 1;
          r.exchanges.bytesSent += (e.body as BodyOf<'exchange.sent'>).bytes;
          break;
        case 'exchange.received':
          r.exchanges.received += 1;
          r.exchanges.bytesReceived += (e.body as BodyOf<'exchange.received'>).bytes;
          break;
        case 'receipt':
          if ((e.body as BodyOf<'receipt'>).disposition === 'delivered') r.exchanges.delivered += 1;
          else r.exchanges.failed += 1;
          break;
        case 'exchange.failed':
          r.exchanges.failed += 1;
          break;
        case 'exchange.cancelled':
          r.exchanges.cancelled += 1;
          break;
        case 'consent.granted':
          r.consents.granted += 1;
          break;
        case 'consent.revoked':
          r.consents.revoked += 1;
          break;
        case 'payment.settled':
          r.settlements += 1;
          break;
        case 'payment.charged': {
          const c = e.body as BodyOf<'payment.charged'>;
          if (charges.has(c.charge)) break;
          charges.add(c.charge);
          const payer = row(c.payer).charges.paid;
          const payee = row(c.payee).charges.earned;
          payer[c.currency] = (payer[c.currency] ?? 0) + c.amount;
          payee[c.currency] = (payee[c.currency] ?? 0) + c.amount;
          break;
        }
        default:
          break;
      }
    }
  }
  return { from: from ?? null, to: to ?? null, hospitals: [...rows.values()].sort((a, b) => (a.hospital < b.hospital ? -1 : 1)), skipped };
}

const money = (m: Record<string, number>): string =>
  Object.entries(m)
    .map(([c, v]) => formatAmount(v, c))
    .join(', ') || '-';

/** Renders a report as plain text (amounts in currency units; the JSON report keeps minor units). */
export function renderReport(r: LedgerReport): string {
  const lines = [`Ledger report ${r.from ?? 'beginning'} .. ${r.to ?? 'now'}`, ''];
  for (const h of r.hospitals) {
    const x = h.exchanges;
    lines.push(`${h.hospital}`);
    lines.push(
      `  exchanges: ${x.sent} sent (${x.bytesSent} bytes), ${x.received} received (${x.bytesReceived} bytes), ${x.delivered} delivered, ${x.failed} failed, ${x.cancelled} cancelled`,
    );
    lines.push(`  consents:  ${h.consents.granted} granted, ${h.consents.revoked} revoked`);
    lines.push(`  charges:   paid ${money(h.charges.paid)}; earned ${money(h.charges.earned)}; ${h.settlements} settlements`);
  }
  if (r.skipped > 0) lines.push('', `${r.skipped} entries could not be decoded and were skipped: run 'hie-ledger verify'.`);
  return `${lines.join('\n')}\n`;
}
