// One job: the exchanges view (filters, keyset pages, a summary by counterparty, CSV and NDJSON export) and one exchange's timeline.
import { PURPOSES, type StoredEntry } from '../../../ledger/index.ts';
import type { ViewContext } from '../context.ts';
import { money, short, size, when } from '../format.ts';
import { html, type SafeHtml } from '../html.ts';
import { csrfField } from '../layout.ts';
import { decodeCursor, encodeCursor, type ExchangeFilter, type ExchangeRow } from '../ledger-index.ts';
import { AgentError } from '../../errors.ts';
import { EXCHANGE_FILTER_KEYS, exchangeFilter, href, pick } from './filters.ts';

/** Exchanges per page of the view. */
export const EXCHANGES_PAGE = 50;
/** Rows the export reads per step (the export is the whole filtered set, in steps). */
const EXPORT_STEP = 1000;

const select = (name: string, label: string, options: readonly string[], value: string | undefined): SafeHtml =>
  html`<label
    >${label}
    <select name="${name}">
      <option value="">any</option>
      ${options.map((o) => html`<option value="${o}" ${o === value ? html` selected` : ''}>${o}</option>`)}
    </select></label
  >`;

/** The filter form of the exchanges and report views: posted (with its CSRF token), so a typed patient id never lands in a URL. */
export function exchangeForm(ctx: ViewContext, view: string): SafeHtml {
  const q = ctx.query;
  const patient = q['ph']
    ? html`<p class="note">
        Patient: keyed hash <code title="${q['ph']}">${short(q['ph'])}</code> (<a
          href="${href(`/console/${view}`, { ...pick(q, EXCHANGE_FILTER_KEYS), ph: undefined })}"
          >any patient</a
        >)
      </p>`
    : '';
  return html`<form class="filters" method="post" action="/console/search">
    ${csrfField(ctx.session)}<input type="hidden" name="view" value="${view}" />${q['ph'] ? html`<input type="hidden" name="ph" value="${q['ph']}" />` : ''}
    <fieldset>
      <legend>Filter</legend>
      <label>From <input type="date" name="from" value="${q['from'] ?? ''}" /></label>
      <label>To <input type="date" name="to" value="${q['to'] ?? ''}" /></label>
      <label>Counterparty <input type="text" name="counterparty" value="${q['counterparty'] ?? ''}" pattern="[a-z0-9-]{2,63}" size="14" /></label>
      ${select('direction', 'Direction', ['sent', 'received'], q['direction'])}
      ${select('status', 'Status', ['pending', 'delivered', 'failed', 'received'], q['status'])} ${select('purpose', 'Purpose', PURPOSES, q['purpose'])}
      <label
        >Patient id <input type="text" name="patient" autocomplete="off" size="16" placeholder="${q['ph'] ? 'keep the one chosen' : 'MRN or system|value'}"
      /></label>
      <button type="submit">Apply</button>
    </fieldset>
    ${patient}
  </form>`;
}

/** Walks every exchange the filter shows, newest first, in steps. */
export function* allExchanges(ctx: ViewContext, filter: ExchangeFilter): Generator<ExchangeRow> {
  let after;
  for (;;) {
    const page = ctx.deps.index.searchExchanges(filter, EXPORT_STEP, after);
    yield* page.items;
    if (!page.next) return;
    after = page.next;
  }
}

/** The columns of the table and of both exports. */
export const EXPORT_COLUMNS = [
  'id',
  'time',
  'direction',
  'counterparty',
  'status',
  'purpose',
  'consent',
  'patientHash',
  'contentType',
  'bytes',
  'settledAt',
  'reason',
  'entry',
] as const;

/** One exchange as an export record. */
export function exportRecord(x: ExchangeRow): Record<(typeof EXPORT_COLUMNS)[number], string | number | null> {
  return {
    id: x.id,
    time: x.ts,
    direction: x.direction,
    counterparty: x.counterparty,
    status: x.status,
    purpose: x.purpose ?? null,
    consent: x.consent ?? null,
    patientHash: x.patient ?? null,
    contentType: x.contentType,
    bytes: x.bytes,
    settledAt: x.settledAt ?? null,
    reason: x.reason ?? null,
    entry: `${x.ref.feed}/${x.ref.seq}`,
  };
}

/** A CSV field (RFC 4180), with a leading formula character neutralised so a spreadsheet does not run it. */
export function csvField(v: string | number | null): string {
  let s = v === null ? '' : String(v);
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** The exchanges view: filter form, a summary by counterparty, a page of rows, next/first links and exports. */
export function exchangesView(ctx: ViewContext): { body: SafeHtml; filter: ExchangeFilter } {
  const filter = exchangeFilter(ctx.query);
  const after = ctx.query['after'] ? decodeCursor(ctx.query['after']) : undefined;
  if (ctx.query['after'] && !after) throw new AgentError('ERR_BAD_REQUEST', 'after is not a cursor this console wrote');
  const page = ctx.deps.index.searchExchanges(filter, EXCHANGES_PAGE, after);
  const kept = pick(ctx.query, EXCHANGE_FILTER_KEYS);
  // The summary covers the whole filtered set (answering "who received what"), not only this page.
  const by = new Map<string, { counterparty: string; direction: string; n: number; bytes: number; failed: number }>();
  let total = 0;
  for (const x of allExchanges(ctx, filter)) {
    total += 1;
    const k = `${x.direction}|${x.counterparty}`;
    const r = by.get(k) ?? { counterparty: x.counterparty, direction: x.direction, n: 0, bytes: 0, failed: 0 };
    r.n += 1;
    r.bytes += x.bytes;
    if (x.status === 'failed') r.failed += 1;
    by.set(k, r);
  }
  const summary = [...by.values()].sort((a, b) => a.direction.localeCompare(b.direction) || a.counterparty.localeCompare(b.counterparty));
  const body = html`${exchangeForm(ctx, 'exchanges')}
    <section aria-labelledby="summary-h">
      <h2 id="summary-h">By counterparty</h2>
      <p>
        ${total} exchange${total === 1 ? '' : 's'} match. Export exactly these: <a href="${href('/console/exchanges.csv', kept)}" download>CSV</a> ·
        <a href="${href('/console/exchanges.ndjson', kept)}" download>NDJSON</a>
      </p>
      <table>
        <caption>
          Exchanges matching the filter, by direction and counterparty
        </caption>
        <thead>
          <tr>
            <th scope="col">Direction</th>
            <th scope="col">Counterparty</th>
            <th scope="col">Exchanges</th>
            <th scope="col">Failed</th>
            <th scope="col">Bytes</th>
          </tr>
        </thead>
        <tbody>
          ${summary.map(
            (r) =>
              html`<tr>
                <td>${r.direction}</td>
                <td>${r.counterparty}</td>
                <td class="num">${r.n}</td>
                <td class="num">${r.failed}</td>
                <td class="num">${size(r.bytes)}</td>
              </tr>`,
          )}
        </tbody>
      </table>
    </section>
    <section aria-labelledby="list-h">
      <h2 id="list-h">Exchanges</h2>
      ${exchangeTable(page.items)}
      <p class="pager">
        ${after ? html`<a href="${href('/console/exchanges', kept)}">Newest</a>` : ''}
        ${page.next ? html`<a rel="next" href="${href('/console/exchanges', { ...kept, after: encodeCursor(page.next) })}">Older</a>` : ''}
      </p>
    </section>`;
  return { body, filter };
}

/** A table of exchanges, each linked to its timeline. */
export function exchangeTable(rows: readonly ExchangeRow[]): SafeHtml {
  if (rows.length === 0) return html`<p>No exchange matches.</p>`;
  return html`<table class="exchanges">
    <caption>
      Newest first
    </caption>
    <thead>
      <tr>
        <th scope="col">Time</th>
        <th scope="col">Exchange</th>
        <th scope="col">Direction</th>
        <th scope="col">Counterparty</th>
        <th scope="col">Status</th>
        <th scope="col">Purpose</th>
        <th scope="col">Consent</th>
        <th scope="col">Patient (hash)</th>
        <th scope="col">Size</th>
      </tr>
    </thead>
    <tbody>
      ${rows.map(
        (x) =>
          html`<tr>
            <td>${when(x.ts)}</td>
            <td><a href="/console/exchanges/${encodeURIComponent(x.id)}">${x.id}</a></td>
            <td>${x.direction}</td>
            <td>${x.counterparty}</td>
            <td><span class="status status-${x.status}">${x.status}</span>${x.reason ? html` <small>(${x.reason})</small>` : ''}</td>
            <td>${x.purpose ?? '-'}</td>
            <td>${x.consent ?? '-'}</td>
            <td>${x.patient ? html`<code title="${x.patient}">${short(x.patient)}</code>` : '-'}</td>
            <td class="num">${size(x.bytes)}</td>
          </tr>`,
      )}
    </tbody>
  </table>`;
}

const STEP: Record<string, string> = {
  'consent.granted': 'Consent granted',
  'consent.revoked': 'Consent revoked',
  'exchange.sent': 'Sent (released)',
  'exchange.received': 'Received',
  receipt: 'Receipt',
  'exchange.failed': 'Failed',
  'payment.charged': 'Charge',
};

function describe(e: StoredEntry): SafeHtml {
  const b = e.entry.body as Record<string, unknown>;
  switch (e.entry.type) {
    case 'consent.granted':
      return html`consent ${String(b['consent'])} for ${(b['grantees'] as string[]).join(', ')}; purposes ${(b['purposes'] as string[]).join(', ')}; from
      ${when(b['validFrom'] as string)}${b['validUntil'] ? html` until ${when(b['validUntil'] as string)}` : ''}`;
    case 'consent.revoked':
      return html`consent ${String(b['consent'])} revoked (${String(b['reason'])})`;
    case 'exchange.sent':
      return html`to ${String(b['to'])} under consent ${String(b['consent'])}, purpose ${String(b['purpose'])}, ${String(b['contentType'])},
      ${size(b['bytes'] as number)}`;
    case 'exchange.received':
      return html`from ${String(b['from'])}, ${String(b['contentType'])}, ${size(b['bytes'] as number)}`;
    case 'receipt':
      return html`from ${String(b['from'])}:
      ${String(b['disposition'])}${b['reason'] ? html` (${String(b['reason'])})` : ''}${b['signature'] ? ', signed by the recipient' : ''}`;
    case 'exchange.failed':
      return html`not delivered to ${String(b['peer'])}: ${String(b['reason'])}`;
    case 'payment.charged':
      return html`${String(b['kind'])} fee ${money(b['amount'] as number, b['currency'] as string)}, ${String(b['payer'])} pays ${String(b['payee'])}`;
    default:
      return html`${e.entry.type}`;
  }
}

/** One exchange's story as a timeline: consent, sent, received, receipt, charges, each with its ledger entry and whether a checkpoint covers it. */
export async function exchangeView(ctx: ViewContext, id: string): Promise<SafeHtml | undefined> {
  const { ledger, index } = ctx.deps;
  const story = await ledger.byExchange(id);
  if (story.length === 0) return undefined;
  const row = index.exchange(id);
  const consents = new Set(story.flatMap((e) => (e.entry.type === 'exchange.sent' ? [(e.entry.body as { consent: string }).consent] : [])));
  const grants: StoredEntry[] = [];
  for (const c of consents) grants.push(...(await ledger.byConsent(c)).filter((e) => e.entry.type === 'consent.granted' || e.entry.type === 'consent.revoked'));
  const all = [...grants, ...story].sort((a, b) => (a.entry.ts < b.entry.ts ? -1 : a.entry.ts > b.entry.ts ? 1 : 0));
  const items: SafeHtml[] = [];
  for (const e of all) {
    const cp = await ledger.checkpointCovering(e.entry.feed, e.entry.seq);
    items.push(
      html`<li class="step step-${e.entry.type.replace('.', '-')}">
        <h3>${STEP[e.entry.type] ?? e.entry.type} <small>${when(e.entry.ts)}</small></h3>
        <p>${describe(e)}</p>
        <p class="entry">
          Ledger entry <code>${e.entry.feed}/${e.entry.seq}</code>, SHA-256 <code title="${e.hash}">${short(e.hash)}</code>;
          ${cp ? html`<span class="ok">in the checkpoint of size ${cp.size}</span>` : html`<span class="warn">not yet in a checkpoint</span>`}
        </p>
      </li>`,
    );
  }
  const summary = row
    ? html`<p>
        ${row.direction === 'sent' ? `Sent to ${row.counterparty}` : `Received from ${row.counterparty}`} at ${when(row.ts)}:
        <span class="status status-${row.status}">${row.status}</span
        >.${row.patient ? html` Patient (keyed hash) <code title="${row.patient}">${short(row.patient)}</code>.` : ''}
      </p>`
    : html`<p>This exchange is not one of this hospital's own; its entries come from replicated feeds.</p>`;
  return html`${summary}
    <p>
      <a class="button" href="/console/exchanges/${encodeURIComponent(id)}/proof" download>Download the offline proof</a> (verify with
      <code>hie-ledger verify-proof FILE --ca ca.pem</code>)
    </p>
    <ol class="timeline">
      ${items}
    </ol>`;
}
