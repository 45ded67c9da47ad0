import { createHash } from 'node:crypto';
import canonicalize from 'canonicalize';
import type { BodyOf, Ledger } from '../../ledger/index.ts';
import type { VerifiedUsage } from '../../relay/protocol/index.ts';

/** Ledger account of the relay operator (payee of transport fees). */
export const RELAY_ACCOUNT = 'relay-operator';

/**
 * The `payment.charged` bodies a relay usage statement yields for the
 * exchanges of this hospital that its transfer carried (one, or a batch),
 * per exchange in the order given. The sender pays the transport fee to the
 * relay operator: one charge per transfer, as the relay signed it, on the
 * first exchange the transfer carried (a batch envelope is one transfer);
 * its id derives from the signed statement, so both parties name the same
 * charge. When an exchange answers a records request and was delivered
 * (its id in `delivered`: the records reached the requester), the requester
 * (the recipient) pays the release fee of the signed tariff to this hospital
 * (id derived from the exchange, so a resent exchange is charged once). Zero
 * amounts yield nothing.
 */
export function chargesFromUsage(
  exchanges: ReadonlyArray<{ id: string; to: string; requestId?: string | undefined }>,
  usage: VerifiedUsage,
  delivered: ReadonlySet<string>,
): Array<Array<BodyOf<'payment.charged'>>> {
  const s = usage.statement;
  return exchanges.map((exchange, i) => {
    const out: Array<BodyOf<'payment.charged'>> = [];
    if (i === 0 && s.fee.amount > 0) {
      const id = createHash('sha256')
        .update(canonicalize(s) ?? '')
        .digest('hex')
        .slice(0, 40);
      out.push({
        charge: `t${id}`,
        exchange: exchange.id,
        kind: 'transport',
        payer: s.from,
        payee: RELAY_ACCOUNT,
        amount: s.fee.amount,
        currency: s.fee.currency,
      });
    }
    if (exchange.requestId && delivered.has(exchange.id) && s.releaseFee && s.releaseFee.amount > 0 && s.to === exchange.to) {
      const id = createHash('sha256').update(`release\u0000${exchange.id}`).digest('hex').slice(0, 40);
      out.push({
        charge: `r${id}`,
        exchange: exchange.id,
        kind: 'release',
        payer: exchange.to,
        payee: s.from,
        amount: s.releaseFee.amount,
        currency: s.releaseFee.currency,
      });
    }
    return out;
  });
}

/** One line of a settlement statement. */
export interface SettlementLine {
  counterparty: string;
  currency: string;
  /** What this hospital owes the counterparty (minor units). */
  owes: number;
  /** What the counterparty owes this hospital (minor units). */
  owed: number;
  charges: number;
}

/** A hospital's settlement statement for a period, from the ledger. */
export interface SettlementStatement {
  hospital: string;
  period: { start: string; end: string };
  lines: SettlementLine[];
  totals: Array<{ currency: string; owes: number; owed: number; net: number }>;
  /**
   * Hospitals that may bill this one for the period and whose ledger feed
   * this ledger does not hold: the charges they logged (release fees for
   * records they sent in answer to this hospital's requests) are missing
   * from the statement until their feed is replicated here. Hospitals this
   * one only sent to are not named: this hospital logs every charge of its
   * own sends itself.
   */
  unreplicated: string[];
}

/** Start (inclusive) and end (exclusive) of a `YYYY-MM` month, in UTC. */
export function monthPeriod(period: string): { start: Date; end: Date } {
  const m = /^(\d{4})-(0[1-9]|1[0-2])$/.exec(period);
  if (!m) throw new TypeError('period must be YYYY-MM');
  const y = Number(m[1]);
  const mo = Number(m[2]) - 1;
  return { start: new Date(Date.UTC(y, mo, 1)), end: new Date(Date.UTC(y, mo + 1, 1)) };
}

/**
 * What `hospital` owes and is owed in [start, end): every distinct
 * `payment.charged` in any feed the ledger holds where it is payer or payee
 * (a charge logged by both parties counts once), and which counterparties'
 * feeds it does not hold (their charges cannot be in it).
 */
export async function settlementStatement(
  ledger: Ledger,
  hospital: string,
  start: Date,
  end: Date,
  options: {
    /**
     * Whether exchange `exchangeId` received from `from` answers a records
     * request of this hospital (only such an exchange carries a release fee
     * its sender bills). Without it, every hospital that sent something counts.
     */
    billable?: (exchangeId: string, from: string) => Promise<boolean>;
  } = {},
): Promise<SettlementStatement> {
  const seen = new Set<string>();
  const lines = new Map<string, SettlementLine>();
  const inPeriod = (ts: string): boolean => Date.parse(ts) >= start.getTime() && Date.parse(ts) < end.getTime();
  for (const { entry } of await ledger.byType('payment.charged')) {
    const c = entry.body as BodyOf<'payment.charged'>;
    if (!inPeriod(entry.ts) || seen.has(c.charge)) continue;
    if (c.payer !== hospital && c.payee !== hospital) continue;
    seen.add(c.charge);
    const counterparty = c.payer === hospital ? c.payee : c.payer;
    const key = `${counterparty}|${c.currency}`;
    const line = lines.get(key) ?? { counterparty, currency: c.currency, owes: 0, owed: 0, charges: 0 };
    if (c.payer === hospital) line.owes += c.amount;
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
  const held = new Set(ledger.feeds());
  const partners = new Set<string>();
  // Only a sender bills (its own feed logs the charges): what this hospital received may carry a fee it owes.
  for (const { entry } of await ledger.byType('exchange.received', hospital)) {
    const b = entry.body as BodyOf<'exchange.received'>;
    if (!inPeriod(entry.ts) || partners.has(b.from) || held.has(b.from)) continue;
    if (!options.billable || (await options.billable(b.exchange, b.from))) partners.add(b.from);
  }
  const unreplicated = [...partners].filter((p) => !held.has(p)).sort();
  return { hospital, period: { start: start.toISOString(), end: end.toISOString() }, lines: sorted, totals: [...totals.values()], unreplicated };
}
