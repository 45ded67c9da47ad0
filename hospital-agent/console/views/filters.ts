// One job: reading the console's list filters from a query string, and writing them back into links.
import { PURPOSES } from '../../../ledger/index.ts';
import { AgentError } from '../../errors.ts';
import type { ExchangeFilter, ExchangeStatus } from '../ledger-index.ts';

const DAY = /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$/;
const HOSPITAL = /^[a-z0-9-]{2,63}$/;
const HASH = /^[0-9a-f]{64}$/;

const bad = (message: string): AgentError => new AgentError('ERR_BAD_REQUEST', message);

/** A `YYYY-MM-DD` day's first instant, or (with `next`) the first instant of the day after: filters are [from, to + 1 day). */
export function dayBound(day: string, next = false): string {
  const t = Date.parse(`${day}T00:00:00.000Z`);
  if (!DAY.test(day) || Number.isNaN(t) || new Date(t).toISOString().slice(0, 10) !== day) throw bad('dates must be YYYY-MM-DD');
  return new Date(t + (next ? 86_400_000 : 0)).toISOString();
}

/** The patient hash a console URL names (`ph`), checked. */
export function patientParam(q: Record<string, string>): string | undefined {
  const ph = q['ph'];
  if (ph === undefined || ph === '') return undefined;
  if (!HASH.test(ph)) throw bad('ph must be a keyed patient hash (64 hex digits)');
  return ph;
}

/** The exchange filter of a console URL: from, to (days, inclusive), counterparty, direction, status, purpose, ph. */
export function exchangeFilter(q: Record<string, string>): ExchangeFilter {
  const f: ExchangeFilter = {};
  if (q['from']) f.from = dayBound(q['from']);
  if (q['to']) f.to = dayBound(q['to'], true);
  if (q['counterparty']) {
    if (!HOSPITAL.test(q['counterparty'])) throw bad('counterparty must be a hospital id');
    f.counterparty = q['counterparty'];
  }
  if (q['direction']) {
    if (q['direction'] !== 'sent' && q['direction'] !== 'received') throw bad('direction must be sent or received');
    f.direction = q['direction'];
  }
  if (q['status']) {
    if (!['pending', 'delivered', 'failed', 'received'].includes(q['status'])) throw bad('status must be pending, delivered, failed or received');
    f.status = q['status'] as ExchangeStatus;
  }
  if (q['purpose']) {
    if (!(PURPOSES as readonly string[]).includes(q['purpose'])) throw bad(`purpose must be one of ${PURPOSES.join(', ')}`);
    f.purpose = q['purpose'];
  }
  const ph = patientParam(q);
  if (ph) f.patient = ph;
  return f;
}

/** The filter fields a link keeps (never a clear patient id: the console's URLs carry only `ph`). */
export const EXCHANGE_FILTER_KEYS = ['from', 'to', 'counterparty', 'direction', 'status', 'purpose', 'ph'] as const;

/** `path?…` with the given query values (empty ones dropped). */
export function href(path: string, q: Record<string, string | undefined>): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v !== undefined && v !== '') params.set(k, v);
  const s = params.toString();
  return s ? `${path}?${s}` : path;
}

/** The subset of `q` named by `keys`. */
export function pick(q: Record<string, string>, keys: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of keys) if (q[k] !== undefined && q[k] !== '') out[k] = q[k] as string;
  return out;
}
