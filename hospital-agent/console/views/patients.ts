// One job: the consents view (by patient: status and what was released under each) and the patient access report.
import type { ViewContext } from '../context.ts';
import { short, when } from '../format.ts';
import { html, type SafeHtml } from '../html.ts';
import { csrfField } from '../layout.ts';
import type { ConsentRow, ExchangeRow } from '../ledger-index.ts';
import { patientParam } from './filters.ts';

/** A consent's status at `now`: active, revoked or expired (or not yet valid). */
export function consentStatus(c: ConsentRow, now: Date): 'active' | 'revoked' | 'expired' | 'not yet valid' {
  const t = now.toISOString();
  if (c.revokedAt !== undefined) return 'revoked';
  if (c.validUntil !== undefined && c.validUntil < t) return 'expired';
  if (c.validFrom > t) return 'not yet valid';
  return 'active';
}

/** The patient form (posted with its CSRF token: the typed id never lands in a URL). */
export function patientForm(ctx: ViewContext, view: string, label: string): SafeHtml {
  const ph = ctx.query['ph'];
  return html`<form class="filters" method="post" action="/console/search">
    ${csrfField(ctx.session)}<input type="hidden" name="view" value="${view}" />
    <label>Patient id <input type="text" name="patient" autocomplete="off" required placeholder="MRN or system|value" /></label>
    <button type="submit">${label}</button>
    ${ph ? html`<p class="note">Showing the patient whose keyed hash is <code title="${ph}">${short(ph)}</code>.</p>` : ''}
  </form>`;
}

const releasesTable = (rows: readonly ExchangeRow[], revokedAt: string | undefined): SafeHtml =>
  rows.length === 0
    ? html`<p>Nothing was released under this consent.</p>`
    : html`<table>
        <caption>
          Released under this consent
        </caption>
        <thead>
          <tr>
            <th scope="col">Time</th>
            <th scope="col">Exchange</th>
            <th scope="col">To</th>
            <th scope="col">Status</th>
            <th scope="col">After revocation?</th>
          </tr>
        </thead>
        <tbody>
          ${rows.map(
            (x) =>
              html`<tr>
                <td>${when(x.ts)}</td>
                <td><a href="/console/exchanges/${encodeURIComponent(x.id)}">${x.id}</a></td>
                <td>${x.counterparty}</td>
                <td>${x.status}</td>
                <td>${revokedAt !== undefined && x.ts >= revokedAt ? html`<strong class="bad">YES</strong>` : 'no'}</td>
              </tr>`,
          )}
        </tbody>
      </table>`;

/** Consents of one patient (or the newest of all), each with its status and its releases. */
export function consentsView(ctx: ViewContext): SafeHtml {
  const ph = patientParam(ctx.query);
  const all = ctx.deps.index.consentsOf(ph);
  const shown = ph ? all : all.slice(0, 100);
  const cards = shown.map((c) => {
    const releases = ctx.deps.index.releasesUnder(c.id);
    const after = c.revokedAt === undefined ? 0 : releases.filter((x) => x.ts >= (c.revokedAt as string)).length;
    const status = consentStatus(c, ctx.now);
    return html`<section class="consent" aria-labelledby="c-${c.id}">
      <h2 id="c-${c.id}">Consent ${c.id} <span class="status status-${status.replace(/ /g, '-')}">${status}</span></h2>
      <dl>
        <dt>Patient (keyed hash)</dt>
        <dd><code title="${c.patient}">${short(c.patient)}</code></dd>
        <dt>Granted</dt>
        <dd>${when(c.grantedAt)}</dd>
        <dt>Recipients</dt>
        <dd>${c.grantees.join(', ')}</dd>
        <dt>Purposes</dt>
        <dd>${c.purposes.join(', ')}</dd>
        <dt>Scope</dt>
        <dd>${c.scope.join(', ')}</dd>
        <dt>Valid</dt>
        <dd>${when(c.validFrom)} to ${when(c.validUntil)}</dd>
        ${
          c.revokedAt
            ? html`<dt>Revoked</dt>
                <dd>${when(c.revokedAt)} (${c.revocationReason ?? ''}); releases after the revocation: <strong>${after}</strong></dd>`
            : ''
        }
        <dt>Ledger entry</dt>
        <dd><code>${c.ref.feed}/${c.ref.seq}</code></dd>
      </dl>
      ${releasesTable(releases, c.revokedAt)}
    </section>`;
  });
  return html`${patientForm(ctx, 'consents', 'Show consents')}
  ${ph ? '' : html`<p>The newest ${shown.length} of ${all.length} consents; choose a patient to see all of theirs.</p>`}
  ${cards.length ? cards : html`<p>No consent.</p>`}`;
}

/** Every release of one patient's records: to whom, when, under which consent, the receipt, and the proof reference. Printable. */
export function reportView(ctx: ViewContext): SafeHtml {
  const ph = patientParam(ctx.query);
  if (!ph)
    return html`${patientForm(ctx, 'report', 'Build the report')}
      <p>Choose a patient to list every release of their records.</p>`;
  const releases: ExchangeRow[] = [];
  let after;
  for (;;) {
    const page = ctx.deps.index.searchExchanges({ patient: ph, direction: 'sent' }, 1000, after);
    releases.push(...page.items);
    if (!page.next) break;
    after = page.next;
  }
  releases.reverse();
  return html`<div class="no-print">
      ${patientForm(ctx, 'report', 'Build the report')}
      <p><a class="button" href="#print" id="print-hint">Print this page</a> (your browser's print command; the print layout hides the navigation).</p>
    </div>
    <section class="report" aria-labelledby="report-h">
      <h2 id="report-h">Releases of this patient's records by ${ctx.deps.self}</h2>
      <p>
        Patient keyed hash <code>${ph}</code>. Report made ${when(ctx.now.toISOString())} from the hospital's signed ledger. Each line names the ledger entry
        that records the release; an auditor can check it with the offline proof of the exchange.
      </p>
      ${
        releases.length === 0
          ? html`<p>No release of this patient's records is recorded.</p>`
          : html`<table>
              <caption>
                ${releases.length} release${releases.length === 1 ? '' : 's'}, oldest first
              </caption>
              <thead>
                <tr>
                  <th scope="col">When</th>
                  <th scope="col">To</th>
                  <th scope="col">Purpose</th>
                  <th scope="col">Consent</th>
                  <th scope="col">Receipt</th>
                  <th scope="col">Proof reference</th>
                </tr>
              </thead>
              <tbody>
                ${releases.map(
                  (x) =>
                    html`<tr>
                      <td>${when(x.ts)}</td>
                      <td>${x.counterparty}</td>
                      <td>${x.purpose ?? '-'}</td>
                      <td>${x.consent ?? '-'}</td>
                      <td>
                        ${x.status === 'delivered' ? `delivered ${when(x.settledAt)}` : x.status === 'failed' ? `not delivered (${x.reason ?? 'failed'})` : 'awaiting receipt'}
                      </td>
                      <td>
                        <code>${x.ref.feed}/${x.ref.seq}</code> · <a href="/console/exchanges/${encodeURIComponent(x.id)}/proof" download>proof of ${x.id}</a>
                      </td>
                    </tr>`,
                )}
              </tbody>
            </table>`
      }
    </section>`;
}
