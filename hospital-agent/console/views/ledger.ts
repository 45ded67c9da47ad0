// One job: the views over the ledger as a whole: overview, audit events, settlements, integrity, and the access log.
import { toAuditEvent, VERIFY_RULES } from '../../../ledger/index.ts';
import { monthPeriod } from '../../engine/payments.ts';
import { AgentError } from '../../errors.ts';
import { parseAuditQuery, storedOf, type QueryParams } from '../audit-query.ts';
import { exchangesChart } from '../chart.ts';
import type { LastVerification, ViewContext } from '../context.ts';
import { money, short, when } from '../format.ts';
import { html, type SafeHtml } from '../html.ts';
import { csrfField } from '../layout.ts';
import { encodeCursor } from '../ledger-index.ts';
import { href, patientParam } from './filters.ts';
import { PATIENT_HMAC_SYSTEM } from '../../consent/fhir.ts';

/** Days the overview's chart covers. */
export const CHART_DAYS = 14;

const days = (until: string | undefined, now: Date): string => {
  if (!until) return '-';
  const d = Math.floor((Date.parse(until) - now.getTime()) / 86_400_000);
  return d < 0 ? `expired ${when(until)}` : `${when(until)} (in ${d} day${d === 1 ? '' : 's'})`;
};

function findingsTable(last: LastVerification | undefined): SafeHtml {
  if (!last) return html`<p>No verification has run since the agent started. <a href="/console/integrity">Run one</a>.</p>`;
  const r = last.result;
  return html`<p>
      Last verification ${when(last.at)} by ${last.by}:
      ${r.ok ? html`<strong class="ok">no finding</strong>` : html`<strong class="bad">${r.findings.length + r.omitted} finding${r.findings.length + r.omitted === 1 ? '' : 's'}</strong>`}
      over ${r.stats.entries} entries of ${r.stats.feeds} feeds.
    </p>
    ${
      r.findings.length
        ? html`<table>
            <caption>
              Findings
            </caption>
            <thead>
              <tr>
                <th scope="col">Rule</th>
                <th scope="col">Entry</th>
                <th scope="col">Detail</th>
                <th scope="col">What the rule checks</th>
              </tr>
            </thead>
            <tbody>
              ${r.findings.map(
                (f) =>
                  html`<tr>
                    <td><code>${f.rule}</code></td>
                    <td>${f.feed ?? '-'}${f.seq === null ? '' : `/${f.seq}`}</td>
                    <td>${f.detail}</td>
                    <td>${VERIFY_RULES[f.rule]}</td>
                  </tr>`,
              )}
            </tbody>
          </table>`
        : ''
    }`;
}

/** Feeds and heads, checkpoints, replication, the last verification, certificate and CRL expiry, and the chart. */
export async function overviewView(ctx: ViewContext): Promise<SafeHtml> {
  const { ledger, index } = ctx.deps;
  const status = await ledger.status();
  const checkpoints = await ledger.checkpoints();
  const newest = new Map<string, (typeof checkpoints)[number]>();
  for (const c of checkpoints) if (!newest.has(c.agent) || (newest.get(c.agent)?.ts ?? '') < c.ts) newest.set(c.agent, c);
  // Replication lag: how far the heads other agents checkpointed are ahead of what this ledger holds.
  const claimed = new Map<string, number>();
  for (const c of checkpoints) for (const h of c.heads) claimed.set(h.feed, Math.max(claimed.get(h.feed) ?? -1, h.seq));
  const covering = new Map<string, number | undefined>();
  for (const f of status.feeds) covering.set(f.feed, (await ledger.checkpointCovering(f.feed, f.seq))?.size);
  const rep = ctx.deps.replication?.();
  const perDay = index.perDay(CHART_DAYS, ctx.now);
  const crl = ctx.deps.crl?.();
  const counts = index.size();
  return html`<section aria-labelledby="chart-h">
      <h2 id="chart-h">Exchanges per day</h2>
      ${exchangesChart(perDay)}
      <p>${counts.exchanges} exchanges and ${counts.consents} consents of ${ctx.deps.self}; ${counts.entries} ledger entries held.</p>
    </section>
    <section aria-labelledby="feeds-h">
      <h2 id="feeds-h">Feeds</h2>
      <table>
        <caption>
          Ledger feeds held here
        </caption>
        <thead>
          <tr>
            <th scope="col">Feed</th>
            <th scope="col">Head seq</th>
            <th scope="col">Head hash</th>
            <th scope="col">Last entry</th>
            <th scope="col">Signed tree checkpoint</th>
            <th scope="col">Checkpointed by others up to</th>
            <th scope="col">Lag</th>
            <th scope="col">State</th>
          </tr>
        </thead>
        <tbody>
          ${status.feeds.map((f) => {
            const c = claimed.get(f.feed);
            return html`<tr>
              <td>${f.feed}${f.feed === status.feed ? ' (own)' : ''}</td>
              <td class="num">${f.seq}</td>
              <td><code title="${f.hash}">${short(f.hash)}</code></td>
              <td>${when(f.ts)}</td>
              <td>
                ${covering.get(f.feed) === undefined ? html`<span class="warn">none covers the head</span>` : `size ${covering.get(f.feed)} (covers the head)`}
              </td>
              <td class="num">${c ?? '-'}</td>
              <td class="num">${c === undefined ? '-' : Math.max(0, c - f.seq)}</td>
              <td>${f.stopped ? html`<strong class="bad">stopped (equivocation)</strong>` : 'ok'}</td>
            </tr>`;
          })}
        </tbody>
      </table>
      ${rep ? html`<p>Replication peers: ${rep.peers.join(', ') || 'none'}${rep.dropped.length ? html`; <strong class="bad">dropped: ${rep.dropped.map((d) => d.peer).join(', ')}</strong>` : ''}; ranges pending: ${rep.pending.length}.</p>` : ''}
    </section>
    <section aria-labelledby="cp-h">
      <h2 id="cp-h">Witnessed heads</h2>
      ${
        newest.size === 0
          ? html`<p>No other agent's signed statement of heads stored yet (agents exchange them every minute).</p>`
          : html`<table>
              <caption>
                Newest signed checkpoint of each agent
              </caption>
              <thead>
                <tr>
                  <th scope="col">Agent</th>
                  <th scope="col">Signed</th>
                  <th scope="col">Heads</th>
                </tr>
              </thead>
              <tbody>
                ${[...newest.values()].map(
                  (c) =>
                    html`<tr>
                      <td>${c.agent}</td>
                      <td>${when(c.ts)}</td>
                      <td>${c.heads.map((h) => `${h.feed}@${h.seq}`).join(', ')}</td>
                    </tr>`,
                )}
              </tbody>
            </table>`
      }
      ${status.evidence.length ? html`<p><strong class="bad">${status.evidence.length} equivocation evidence record(s)</strong>: see <a href="/console/integrity">Integrity</a>.</p>` : ''}
    </section>
    <section aria-labelledby="ver-h">
      <h2 id="ver-h">Verification</h2>
      ${findingsTable(ctx.last)}
    </section>
    <section aria-labelledby="cert-h">
      <h2 id="cert-h">Certificate and CRL</h2>
      <dl>
        <dt>Agent certificate valid until</dt>
        <dd>${days(ctx.deps.certificateValidTo?.(), ctx.now)}</dd>
        <dt>CRL next update</dt>
        <dd>${crl ? html`${days(crl.nextUpdate?.toISOString(), ctx.now)} (CRL number ${String(crl.crlNumber ?? '-')})` : 'no CRL configured'}</dd>
      </dl>
    </section>`;
}

/** The audit query of a console URL: ITI-81 parameters, the patient as `ph` (turned into patient.identifier). */
export function auditParams(q: Record<string, string>): QueryParams {
  const out: QueryParams = {};
  const dates: string[] = [];
  if (q['from']) dates.push(`ge${q['from']}`);
  if (q['to']) dates.push(`le${q['to']}`);
  if (dates.length) out['date'] = dates;
  for (const k of ['entity', 'agent', 'outcome', 'type', 'subtype', '_count', '_cursor']) if (q[k]) out[k] = q[k];
  const ph = patientParam(q);
  if (ph) out['patient.identifier'] = `${PATIENT_HMAC_SYSTEM}|${ph}`;
  return out;
}

/** Audit events with ITI-81 filters: the same query as GET /fhir/AuditEvent, shown as a table. */
export async function auditView(ctx: ViewContext): Promise<SafeHtml> {
  const q = ctx.query;
  const query = parseAuditQuery(auditParams(q), () => {
    throw new AgentError('ERR_BAD_REQUEST', 'the console names patients by hash');
  });
  if (!q['_count']) query.count = 50;
  await ctx.deps.index.refresh();
  const page = ctx.deps.index.searchEntries(query.filter, query.count, query.cursor);
  const stored = await storedOf(ctx.deps.ledger, page.items);
  const keep: Record<string, string> = {};
  for (const k of ['from', 'to', 'entity', 'agent', 'outcome', 'subtype', 'ph']) if (q[k]) keep[k] = q[k] as string;
  const fhir = new URLSearchParams();
  for (const [k, v] of Object.entries(auditParams({ ...keep }))) for (const x of Array.isArray(v) ? v : [v ?? '']) fhir.append(k, x);
  const rows = stored.map((s) => {
    const a = toAuditEvent(s);
    const type = a['type'] as { code: string; display: string };
    const agents = (a['agent'] as Array<{ who: { identifier: { value: string } } }>).map((g) => g.who.identifier.value).join(' → ');
    const entities = (a['entity'] as Array<{ what: { identifier: { system: string; value: string } } }>).map((e) => e.what.identifier);
    return html`<tr>
      <td>${when(a['recorded'] as string)}</td>
      <td>${type.display} <small>(${type.code})</small></td>
      <td><code>${s.entry.type}</code></td>
      <td>${a['outcome'] === '0' ? 'success' : html`<span class="bad">failure</span>`}</td>
      <td>${agents}</td>
      <td>
        ${entities.map((e) => html`<div><small>${e.system.replace(/^urn:hie:/, '').replace(/:.*$/, '')}</small> ${e.system.startsWith('urn:hie:patient-hmac') ? html`<code title="${e.value}">${short(e.value)}</code>` : e.value}</div>`)}
      </td>
    </tr>`;
  });
  const sel = (name: string, label: string, opts: Array<[string, string]>) =>
    html`<label
      >${label}
      <select name="${name}">
        <option value="">any</option>
        ${opts.map(([v, t]) => html`<option value="${v}" ${q[name] === v ? html` selected` : ''}>${t}</option>`)}
      </select></label
    >`;
  return html`<form class="filters" method="post" action="/console/search">
      ${csrfField(ctx.session)}<input type="hidden" name="view" value="audit" />${q['ph'] ? html`<input type="hidden" name="ph" value="${q['ph']}" />` : ''}
      <fieldset>
        <legend>ITI-81 search</legend>
        <label>From <input type="date" name="from" value="${q['from'] ?? ''}" /></label>
        <label>To <input type="date" name="to" value="${q['to'] ?? ''}" /></label>
        <label>Entity (exchange, consent, claim, prescription or feed/seq) <input type="text" name="entity" value="${q['entity'] ?? ''}" size="20" /></label>
        <label>Agent (hospital) <input type="text" name="agent" value="${q['agent'] ?? ''}" size="12" /></label>
        ${sel('outcome', 'Outcome', [
          ['0', 'success'],
          ['4', 'failure'],
        ])}
        ${sel(
          'subtype',
          'Entry type',
          [
            'exchange.sent',
            'exchange.received',
            'receipt',
            'exchange.failed',
            'consent.granted',
            'consent.revoked',
            'payment.charged',
            'payment.settled',
            'key.rotated',
            'genesis',
          ].map((t) => [t, t]),
        )}
        <label>Patient id <input type="text" name="patient" autocomplete="off" size="16" /></label>
        <button type="submit">Search</button>
      </fieldset>
      ${q['ph'] ? html`<p class="note">Patient: keyed hash <code title="${q['ph']}">${short(q['ph'])}</code> (<a href="${href('/console/audit', { ...keep, ph: undefined })}">any patient</a>)</p>` : ''}
    </form>
    <p>The same search through the audit API: <code>GET /fhir/AuditEvent?${fhir.toString()}</code></p>
    ${
      rows.length
        ? html`<table>
            <caption>
              Audit events, newest first
            </caption>
            <thead>
              <tr>
                <th scope="col">Recorded</th>
                <th scope="col">Type</th>
                <th scope="col">Subtype</th>
                <th scope="col">Outcome</th>
                <th scope="col">Agents</th>
                <th scope="col">Entities</th>
              </tr>
            </thead>
            <tbody>
              ${rows}
            </tbody>
          </table>`
        : html`<p>No audit event matches.</p>`
    }
    <p class="pager">
      ${query.cursor ? html`<a href="${href('/console/audit', keep)}">Newest</a>` : ''}
      ${page.next ? html`<a rel="next" href="${href('/console/audit', { ...keep, _cursor: encodeCursor(page.next) })}">Older</a>` : ''}
    </p>`;
}

/** What this hospital owes and is owed for a month, per counterparty, in currency units with the currency. */
export function settlementsView(ctx: ViewContext): SafeHtml {
  const period = ctx.query['period'] || ctx.now.toISOString().slice(0, 7);
  let range: { start: Date; end: Date };
  try {
    range = monthPeriod(period);
  } catch {
    throw new AgentError('ERR_BAD_REQUEST', 'period must be YYYY-MM');
  }
  const s = ctx.deps.index.settlement(range.start, range.end);
  const counterparty = ctx.query['counterparty'];
  const lines = counterparty ? s.lines.filter((l) => l.counterparty === counterparty) : s.lines;
  return html`<form class="filters" method="get" action="/console/settlements">
      <label>Month <input type="month" name="period" value="${period}" /></label>
      <label>Counterparty <input type="text" name="counterparty" value="${counterparty ?? ''}" size="14" /></label> <button type="submit">Show</button>
    </form>
    <p>
      Settlement of ${s.hospital} for ${period} (${when(s.period.start)} to ${when(s.period.end)}), as
      <code>hie-agent settlement --period ${period}</code> computes it.
    </p>
    ${
      lines.length === 0
        ? html`<p>No charges in this period.</p>`
        : html`<table>
              <caption>
                By counterparty
              </caption>
              <thead>
                <tr>
                  <th scope="col">Counterparty</th>
                  <th scope="col">Currency</th>
                  <th scope="col">We owe</th>
                  <th scope="col">We are owed</th>
                  <th scope="col">Charges</th>
                </tr>
              </thead>
              <tbody>
                ${lines.map(
                  (l) =>
                    html`<tr>
                      <td>${l.counterparty}</td>
                      <td>${l.currency}</td>
                      <td class="num">${money(l.owes, l.currency)}</td>
                      <td class="num">${money(l.owed, l.currency)}</td>
                      <td class="num">${l.charges}</td>
                    </tr>`,
                )}
              </tbody>
            </table>
            <table>
              <caption>
                Totals
              </caption>
              <thead>
                <tr>
                  <th scope="col">Currency</th>
                  <th scope="col">We owe</th>
                  <th scope="col">We are owed</th>
                  <th scope="col">Net</th>
                </tr>
              </thead>
              <tbody>
                ${s.totals.map(
                  (t) =>
                    html`<tr>
                      <td>${t.currency}</td>
                      <td class="num">${money(t.owes, t.currency)}</td>
                      <td class="num">${money(t.owed, t.currency)}</td>
                      <td class="num">${money(t.net, t.currency)}</td>
                    </tr>`,
                )}
              </tbody>
            </table>`
    }
    ${s.unreplicated.length ? html`<p class="warn">Incomplete: the ledger feeds of ${s.unreplicated.join(', ')} are not replicated here, so charges they logged are missing.</p>` : ''}`;
}

/** Run a verification now, its findings, and the equivocation evidence kept. */
export async function integrityView(ctx: ViewContext): Promise<SafeHtml> {
  const evidence = await ctx.deps.ledger.evidence();
  return html`<form
      method="post"
      action="/console/integrity/verify"
      hx-post="/console/integrity/verify"
      hx-target="#findings"
      hx-select="#findings"
      hx-swap="outerHTML"
    >
      ${csrfField(ctx.session)}<button type="submit">Run a verification now</button>
    </form>
    <section id="findings" aria-labelledby="findings-h" aria-live="polite">
      <h2 id="findings-h">Findings</h2>
      ${findingsTable(ctx.last)}
    </section>
    <section aria-labelledby="ev-h">
      <h2 id="ev-h">Equivocation evidence</h2>
      ${
        evidence.length === 0
          ? html`<p>None: no feed author was seen signing two histories.</p>`
          : html`<table>
              <caption>
                Two signed statements that cannot both be true
              </caption>
              <thead>
                <tr>
                  <th scope="col">Feed</th>
                  <th scope="col">Seen</th>
                  <th scope="col">Evidence</th>
                </tr>
              </thead>
              <tbody>
                ${evidence.map(
                  (e) =>
                    html`<tr>
                      <td>${String((e as { feed?: string }).feed ?? '-')}</td>
                      <td>${when((e as { at?: string }).at)}</td>
                      <td><pre>${JSON.stringify(e, null, 1).slice(0, 2000)}</pre></td>
                    </tr>`,
                )}
              </tbody>
            </table>`
      }
    </section>`;
}

/** The console's own access log, newest first. */
export function accessView(ctx: ViewContext): SafeHtml {
  const records = ctx.deps.accessLog.recent(200);
  return html`<p>
      Every console query is appended to <code>${ctx.deps.accessLog.path}</code> before it is answered: who, when, which view, which patient (keyed hash only).
      Each line carries the SHA-256 of the line before it.
    </p>
    <table>
      <caption>
        Newest ${records.length} records
      </caption>
      <thead>
        <tr>
          <th scope="col">When</th>
          <th scope="col">Who</th>
          <th scope="col">View</th>
          <th scope="col">Patient (hash)</th>
          <th scope="col">Query</th>
        </tr>
      </thead>
      <tbody>
        ${records.map(
          (r) =>
            html`<tr>
              <td>${when(r.ts)}</td>
              <td>${r.who}</td>
              <td>${r.view}</td>
              <td>${r.patient ? html`<code title="${r.patient}">${short(r.patient)}</code>` : '-'}</td>
              <td>
                ${
                  r.query
                    ? Object.entries(r.query)
                        .map(([k, v]) => `${k}=${v}`)
                        .join(' ')
                    : ''
                }
              </td>
            </tr>`,
        )}
      </tbody>
    </table>`;
}
