// One job: the prescriptions view (the Tasks this agent issued, those it holds as a pharmacy, keyset pages) and one prescription's transitions.
import { AgentError } from '../../errors.ts';
import { TASK_STATES, type HeldPrescription, type PrescriptionTask, type TaskState } from '../../prescriptions/index.ts';
import type { ViewContext } from '../context.ts';
import { short, when } from '../format.ts';
import { html, type SafeHtml } from '../html.ts';
import { csrfField } from '../layout.ts';
import { decodeCursor, encodeCursor, type PrescriptionRow } from '../ledger-index.ts';
import { entriesTable, loadEntries } from './ledger-entries.ts';
import { href, pick } from './filters.ts';

/** Prescriptions per page of the view. */
export const PRESCRIPTIONS_PAGE = 50;
/** Held prescriptions the view lists (newest first). */
export const HELD_SHOWN = 50;
/** The prescription id pattern (a UUID, as prescriptions/service.ts makes them). */
export const PRESCRIPTION_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** When the Task reached its final state (completed or cancelled). */
const endedAt = (t: PrescriptionTask): string | undefined =>
  t.status === 'completed' ? (t.completedAt ?? t.updatedAt) : t.status === 'cancelled' ? t.updatedAt : undefined;

const status = (s: string): SafeHtml => html`<span class="status status-${s}">${s}</span>`;

/**
 * The prescriptions view: a state filter, the Tasks this agent issued newest
 * first in pages (folded by the console's index from the own feed's
 * `prescription.*` entries), then the newest prescriptions it holds as a
 * pharmacy (from its store).
 */
export async function prescriptionsView(ctx: ViewContext): Promise<SafeHtml> {
  const q = ctx.query;
  if (q['status'] && !(TASK_STATES as readonly string[]).includes(q['status']))
    throw new AgentError('ERR_BAD_REQUEST', `status must be one of ${TASK_STATES.join(', ')}`);
  const wanted = q['status'] ? (q['status'] as TaskState) : undefined;
  const after = q['after'] ? decodeCursor(q['after']) : undefined;
  if (q['after'] && !after) throw new AgentError('ERR_BAD_REQUEST', 'after is not a cursor this console wrote');
  const page = ctx.deps.index.searchPrescriptions((t) => wanted === undefined || t.status === wanted, PRESCRIPTIONS_PAGE, after);
  const counts = new Map<string, number>(TASK_STATES.map((s) => [s, 0]));
  for (const t of ctx.deps.index.allPrescriptions()) counts.set(t.status, (counts.get(t.status) ?? 0) + 1);
  const kept = pick(q, ['status']);
  const held = ((await ctx.deps.prescriptions?.listHeld()) ?? []).slice(0, HELD_SHOWN);
  return html`<form class="filters" method="post" action="/console/search">
      ${csrfField(ctx.session)}<input type="hidden" name="view" value="prescriptions" />
      <fieldset>
        <legend>Filter</legend>
        <label
          >State
          <select name="status">
            <option value="">any</option>
            ${TASK_STATES.map((s) => html`<option value="${s}" ${s === wanted ? html` selected` : ''}>${s}</option>`)}
          </select></label
        >
        <button type="submit">Apply</button>
      </fieldset>
    </form>
    <section aria-labelledby="rx-list-h">
      <h2 id="rx-list-h">Issued here</h2>
      <p>${TASK_STATES.map((s, i) => html`${i > 0 ? ' · ' : ''}${s}: ${counts.get(s) ?? 0}`)}</p>
      ${taskTable(page.items)}
      <p class="pager">
        ${after ? html`<a href="${href('/console/prescriptions', kept)}">Newest</a>` : ''}
        ${page.next ? html`<a rel="next" href="${href('/console/prescriptions', { ...kept, after: encodeCursor(page.next) })}">Older</a>` : ''}
      </p>
    </section>
    ${held.length > 0 ? heldTable(held) : ''}`;
}

/** A table of issued Tasks, each linked to its transitions. */
function taskTable(rows: readonly PrescriptionRow[]): SafeHtml {
  if (rows.length === 0) return html`<p>No prescription matches.</p>`;
  return html`<table class="prescriptions">
    <caption>
      Newest first
    </caption>
    <thead>
      <tr>
        <th scope="col">Issued</th>
        <th scope="col">Prescription</th>
        <th scope="col">State</th>
        <th scope="col">Pharmacy</th>
        <th scope="col">Accepted</th>
        <th scope="col">Completed or cancelled</th>
        <th scope="col">Transitions</th>
      </tr>
    </thead>
    <tbody>
      ${rows.map(
        (t) =>
          html`<tr>
            <td>${when(t.ts)}</td>
            <td><a href="/console/prescriptions/${encodeURIComponent(t.id)}">${t.id}</a></td>
            <td>${status(t.status)}${t.cancelledBy ? html` <small>(by the ${t.cancelledBy})</small>` : ''}</td>
            <td>${t.pharmacy ?? '-'}</td>
            <td>${when(t.acceptedAt)}</td>
            <td>${when(t.endedAt)}</td>
            <td class="num">${t.transitions}</td>
          </tr>`,
      )}
    </tbody>
  </table>`;
}

/** The prescriptions this agent holds as a pharmacy (each prescriber's Task is the record; these are its copy). */
function heldTable(rows: readonly HeldPrescription[]): SafeHtml {
  return html`<section aria-labelledby="rx-held-h">
    <h2 id="rx-held-h">Held as a pharmacy</h2>
    <table class="held">
      <caption>
        Newest first (at most ${HELD_SHOWN})
      </caption>
      <thead>
        <tr>
          <th scope="col">Accepted</th>
          <th scope="col">Prescription</th>
          <th scope="col">Prescriber</th>
          <th scope="col">State here</th>
          <th scope="col">Last change</th>
        </tr>
      </thead>
      <tbody>
        ${rows.map(
          (h) =>
            html`<tr>
              <td>${when(h.acceptedAt)}</td>
              <td><a href="/console/prescriptions/${encodeURIComponent(h.id)}">${h.id}</a></td>
              <td>${h.prescriber}</td>
              <td>${status(h.status)}</td>
              <td>${when(h.updatedAt)}</td>
            </tr>`,
        )}
      </tbody>
    </table>
  </section>`;
}

/** One prescription: the Task's state and hashes (never the MedicationRequest, the access code or the secret) and its transitions as ledger entries. */
export async function prescriptionView(ctx: ViewContext, id: string): Promise<{ body: SafeHtml; patient: string | undefined } | undefined> {
  const store = ctx.deps.prescriptions;
  const task = await store?.get(id);
  const held = task ? undefined : (await store?.listHeld())?.find((h) => h.id === id);
  const entries = await loadEntries(ctx, ctx.deps.index.entriesOf('prescription', id));
  if (!task && !held && entries.length === 0) return undefined;
  let facts: SafeHtml;
  if (task) {
    facts = html`<dl class="facts">
      <dt>State</dt>
      <dd>${status(task.status)}${task.cancelledBy ? ` (cancelled by the ${task.cancelledBy})` : ''}</dd>
      <dt>Pharmacy</dt>
      <dd>${task.pharmacy ?? '-'}</dd>
      <dt>Issued</dt>
      <dd>${when(task.createdAt)}</dd>
      <dt>Accepted</dt>
      <dd>${when(task.acceptedAt)}</dd>
      <dt>Completed or cancelled</dt>
      <dd>${when(endedAt(task))}</dd>
      <dt>MedicationRequest SHA-256</dt>
      <dd><code>${task.medicationRequestHash}</code></dd>
      ${
        task.dispenseHash
          ? html`<dt>MedicationDispense SHA-256</dt>
              <dd><code>${task.dispenseHash}</code></dd>`
          : ''
      }
      <dt>Patient (keyed hash)</dt>
      <dd><code title="${task.patient}">${short(task.patient)}</code></dd>
    </dl>`;
  } else if (held) {
    facts = html`<p>Held here as a pharmacy; the prescriber ${held.prescriber} owns the Task.</p>
      <dl class="facts">
        <dt>State here</dt>
        <dd>${status(held.status)}</dd>
        <dt>Accepted</dt>
        <dd>${when(held.acceptedAt)}</dd>
        <dt>Last change</dt>
        <dd>${when(held.updatedAt)}</dd>
      </dl>`;
  } else facts = html`<p>This agent neither owns nor holds this prescription; its entries come from replicated feeds.</p>`;
  const body = html`${facts}
    <section aria-labelledby="rx-entries-h">
      <h2 id="rx-entries-h">Transitions</h2>
      ${await entriesTable(ctx, entries, 'Each transition as the ledger entry that records it, oldest first')}
    </section>`;
  return { body, patient: task?.patient };
}
