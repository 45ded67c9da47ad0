// One job: the claims view (filters, keyset pages, totals by counterparty) and one claim's ledger entries.
import { CLAIM_OUTCOMES } from '../../../ledger/index.ts';
import { AgentError } from '../../errors.ts';
import type { ViewContext } from '../context.ts';
import { money, short, when } from '../format.ts';
import { html, type SafeHtml } from '../html.ts';
import { csrfField } from '../layout.ts';
import { decodeCursor, encodeCursor, type ClaimRow } from '../ledger-index.ts';
import { entriesTable, loadEntries } from './ledger-entries.ts';
import { href, pick } from './filters.ts';

/** Claims per page of the view. */
export const CLAIMS_PAGE = 50;
/** A claim's status: `sent` until the insurer's first answer, then its latest outcome. */
export const CLAIM_STATUSES = ['sent', ...CLAIM_OUTCOMES] as const;
/** The filter fields a claims link keeps. */
export const CLAIM_FILTER_KEYS = ['direction', 'status', 'counterparty'] as const;
/** The claim id pattern (a UUID, as claims/service.ts makes them). */
export const CLAIM_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const HOSPITAL = /^[a-z0-9-]{2,63}$/;
const bad = (message: string): AgentError => new AgentError('ERR_BAD_REQUEST', message);

interface ClaimFilter {
  direction?: ClaimRow['direction'];
  status?: ClaimRow['status'];
  counterparty?: string;
}

/** The claims filter of a console URL, checked. */
export function claimFilter(q: Record<string, string>): ClaimFilter {
  const f: ClaimFilter = {};
  if (q['direction']) {
    if (q['direction'] !== 'outgoing' && q['direction'] !== 'incoming') throw bad('direction must be outgoing or incoming');
    f.direction = q['direction'];
  }
  if (q['status']) {
    if (!(CLAIM_STATUSES as readonly string[]).includes(q['status'])) throw bad(`status must be one of ${CLAIM_STATUSES.join(', ')}`);
    f.status = q['status'] as ClaimRow['status'];
  }
  if (q['counterparty']) {
    if (!HOSPITAL.test(q['counterparty'])) throw bad('counterparty must be a member id');
    f.counterparty = q['counterparty'];
  }
  return f;
}

const select = (name: string, label: string, options: readonly string[], value: string | undefined): SafeHtml =>
  html`<label
    >${label}
    <select name="${name}">
      <option value="">any</option>
      ${options.map((o) => html`<option value="${o}" ${o === value ? html` selected` : ''}>${o}</option>`)}
    </select></label
  >`;

/** A claim's status as the tables show it. */
export function claimStatus(c: { status: string }): SafeHtml {
  return html`<span class="status status-${c.status}">${c.status}</span>`;
}

/**
 * The claims view: filter form, totals by counterparty of the filtered set, a
 * page of claims newest first, next/first links. The rows come from the
 * console's index of the own feed (claim.submitted or claim.received, then
 * claim.responded); only the page's rows are read from the claim store, for
 * the Claim identifier.
 */
export async function claimsView(ctx: ViewContext): Promise<SafeHtml> {
  const q = ctx.query;
  const filter = claimFilter(q);
  const after = q['after'] ? decodeCursor(q['after']) : undefined;
  if (q['after'] && !after) throw bad('after is not a cursor this console wrote');
  const keep = (c: ClaimRow): boolean =>
    (filter.direction === undefined || c.direction === filter.direction) &&
    (filter.status === undefined || c.status === filter.status) &&
    (filter.counterparty === undefined || c.counterparty === filter.counterparty);
  const page = ctx.deps.index.searchClaims(keep, CLAIMS_PAGE, after);
  const kept = pick(q, CLAIM_FILTER_KEYS);
  const by = new Map<string, { direction: string; counterparty: string; currency: string; n: number; claimed: number; paid: number; open: number }>();
  let total = 0;
  for (const c of ctx.deps.index.allClaims()) {
    if (!keep(c)) continue;
    total += 1;
    const k = `${c.direction}|${c.counterparty}|${c.currency}`;
    const r = by.get(k) ?? { direction: c.direction, counterparty: c.counterparty, currency: c.currency, n: 0, claimed: 0, paid: 0, open: 0 };
    r.n += 1;
    r.claimed += c.amount;
    r.paid += c.paid ?? 0;
    if (c.status === 'sent' || c.status === 'queued') r.open += 1;
    by.set(k, r);
  }
  const summary = [...by.values()].sort(
    (a, b) => a.direction.localeCompare(b.direction) || a.counterparty.localeCompare(b.counterparty) || a.currency.localeCompare(b.currency),
  );
  const identifiers = new Map<string, string>();
  for (const c of page.items) {
    const r = await ctx.deps.claims?.get(c.id);
    if (r) identifiers.set(c.id, r.identifier);
  }
  return html`<form class="filters" method="post" action="/console/search">
      ${csrfField(ctx.session)}<input type="hidden" name="view" value="claims" />
      <fieldset>
        <legend>Filter</legend>
        ${select('direction', 'Direction', ['outgoing', 'incoming'], q['direction'])} ${select('status', 'Status', CLAIM_STATUSES, q['status'])}
        <label>Counterparty <input type="text" name="counterparty" value="${q['counterparty'] ?? ''}" pattern="[a-z0-9-]{2,63}" size="14" /></label>
        <button type="submit">Apply</button>
      </fieldset>
    </form>
    <section aria-labelledby="claims-summary-h">
      <h2 id="claims-summary-h">By counterparty</h2>
      <p>${total} claim${total === 1 ? '' : 's'} match.</p>
      <table>
        <caption>
          Claims matching the filter, by direction, counterparty and currency
        </caption>
        <thead>
          <tr>
            <th scope="col">Direction</th>
            <th scope="col">Counterparty</th>
            <th scope="col">Claims</th>
            <th scope="col">Not yet adjudicated</th>
            <th scope="col">Claimed</th>
            <th scope="col">Paid</th>
          </tr>
        </thead>
        <tbody>
          ${summary.map(
            (r) =>
              html`<tr>
                <td>${r.direction}</td>
                <td>${r.counterparty}</td>
                <td class="num">${r.n}</td>
                <td class="num">${r.open}</td>
                <td class="num">${money(r.claimed, r.currency)}</td>
                <td class="num">${money(r.paid, r.currency)}</td>
              </tr>`,
          )}
        </tbody>
      </table>
    </section>
    <section aria-labelledby="claims-list-h">
      <h2 id="claims-list-h">Claims</h2>
      ${claimTable(page.items, identifiers)}
      <p class="pager">
        ${after ? html`<a href="${href('/console/claims', kept)}">Newest</a>` : ''}
        ${page.next ? html`<a rel="next" href="${href('/console/claims', { ...kept, after: encodeCursor(page.next) })}">Older</a>` : ''}
      </p>
    </section>`;
}

/** A table of claims, each linked to its ledger entries (by its Claim identifier when the store has it, else by its id). */
export function claimTable(rows: readonly ClaimRow[], identifiers: ReadonlyMap<string, string>): SafeHtml {
  if (rows.length === 0) return html`<p>No claim matches.</p>`;
  return html`<table class="claims">
    <caption>
      Newest first; amounts in currency units
    </caption>
    <thead>
      <tr>
        <th scope="col">Submitted</th>
        <th scope="col">Claim identifier</th>
        <th scope="col">Direction</th>
        <th scope="col">Counterparty</th>
        <th scope="col">Status</th>
        <th scope="col">Claimed</th>
        <th scope="col">Paid</th>
        <th scope="col">Answered</th>
      </tr>
    </thead>
    <tbody>
      ${rows.map(
        (c) =>
          html`<tr>
            <td>${when(c.ts)}</td>
            <td><a href="/console/claims/${encodeURIComponent(c.id)}">${identifiers.get(c.id) ?? c.id}</a></td>
            <td>${c.direction}</td>
            <td>${c.counterparty}</td>
            <td>${claimStatus(c)}</td>
            <td class="num">${money(c.amount, c.currency)}</td>
            <td class="num">${c.paid === undefined ? '-' : money(c.paid, c.currency)}</td>
            <td>${when(c.answeredAt)}</td>
          </tr>`,
      )}
    </tbody>
  </table>`;
}

/** One claim: what the store holds of it (no FHIR resources, no signatures) and every ledger entry that names it. */
export async function claimView(ctx: ViewContext, id: string): Promise<{ body: SafeHtml; patient: string | undefined } | undefined> {
  const record = await ctx.deps.claims?.get(id);
  const row = ctx.deps.index.claim(id);
  const entries = await loadEntries(ctx, ctx.deps.index.entriesOf('claim', id));
  if (!record && entries.length === 0) return undefined;
  const facts = record
    ? html`<dl class="facts">
        <dt>Claim identifier</dt>
        <dd>${record.identifier}</dd>
        <dt>Claim id</dt>
        <dd><code>${record.id}</code></dd>
        <dt>Direction</dt>
        <dd>${record.direction === 'outgoing' ? `sent to the insurer ${record.peer}` : `received from the hospital ${record.peer}`}</dd>
        <dt>Status</dt>
        <dd>${claimStatus(record)} (${record.responses.length} signed response${record.responses.length === 1 ? '' : 's'} kept)</dd>
        <dt>Claimed</dt>
        <dd>${money(record.amount, record.currency)}</dd>
        <dt>Paid</dt>
        <dd>${record.paid === undefined ? '-' : money(record.paid, record.currency)}</dd>
        <dt>Submitted</dt>
        <dd>${when(record.createdAt)}</dd>
        <dt>Answered</dt>
        <dd>${when(row?.answeredAt)}</dd>
        <dt>Claim SHA-256 (JCS)</dt>
        <dd><code>${record.hash}</code></dd>
        ${
          record.consentId
            ? html`<dt>Consent</dt>
                <dd>${record.consentId}</dd>`
            : ''
        }
        ${
          record.patientHash
            ? html`<dt>Patient (keyed hash)</dt>
                <dd><code title="${record.patientHash}">${short(record.patientHash)}</code></dd>`
            : ''
        }
      </dl>`
    : html`<p>This agent's claim store does not hold this claim; the ledger entries that name it are below.</p>`;
  const body = html`${facts}
    <section aria-labelledby="claim-entries-h">
      <h2 id="claim-entries-h">Ledger entries</h2>
      ${await entriesTable(ctx, entries, 'Every entry of the feeds held that names this claim, oldest first')}
    </section>`;
  return { body, patient: record?.patientHash };
}
