// One job: the ledger entries of one claim or prescription as a table (type, feed/seq, time, what it says, hashes, checkpoint).
import type { StoredEntry } from '../../../ledger/index.ts';
import type { ViewContext } from '../context.ts';
import { money, short, when } from '../format.ts';
import { html, type SafeHtml } from '../html.ts';

/** Entries of one subject the detail page shows at most (a claim has 2-5, a prescription 2-4; anything beyond is not its story). */
export const MAX_SUBJECT_ENTRIES = 200;

const str = (b: Record<string, unknown>, k: string): string => (typeof b[k] === 'string' ? (b[k] as string) : '-');
const amount = (b: Record<string, unknown>): string =>
  typeof b['amount'] === 'number' && typeof b['currency'] === 'string' ? money(b['amount'], b['currency']) : '-';
const hashCode = (label: string, h: unknown): SafeHtml | string => (typeof h === 'string' ? html`${label} <code title="${h}">${short(h)}</code>` : '');

/** What an entry says, in words: parties, amounts and outcomes only (the ledger carries no clinical content). */
function describe(e: StoredEntry): SafeHtml {
  const b = e.entry.body as Record<string, unknown>;
  switch (e.entry.type) {
    case 'claim.submitted':
      return html`submitted to ${str(b, 'insurer')} under consent ${str(b, 'consent')}, claimed ${amount(b)}`;
    case 'claim.received':
      return html`received from ${str(b, 'hospital')}, claimed ${amount(b)}`;
    case 'claim.responded':
      return html`${str(b, 'insurer')} answered <strong>${str(b, 'outcome')}</strong>, benefit ${amount(b)}`;
    case 'payment.charged':
      return html`claim benefit ${amount(b)}: ${str(b, 'payer')} pays ${str(b, 'payee')}`;
    case 'prescription.issued':
      return html`issued (ready for a pharmacy)`;
    case 'prescription.accepted':
      return html`accepted by ${str(b, 'pharmacy')} (in progress)`;
    case 'prescription.rejected':
      return html`handed back by ${str(b, 'pharmacy')} (ready again)`;
    case 'prescription.completed':
      return html`dispensed by ${str(b, 'pharmacy')} (completed)`;
    case 'prescription.cancelled':
      return html`cancelled by the ${str(b, 'by')}`;
    default:
      return html`${e.entry.type}`;
  }
}

/** The hashes an entry's body carries besides its own: the Claim's, the signed response's, the MedicationRequest's, the dispense's and its receipt's. */
function bodyHashes(e: StoredEntry): SafeHtml {
  const b = e.entry.body as Record<string, unknown>;
  const label: Record<string, string> = {
    'claim.submitted': 'Claim',
    'claim.received': 'Claim',
    'claim.responded': 'ClaimResponse',
    'prescription.issued': 'MedicationRequest',
    'prescription.completed': 'MedicationDispense',
  };
  const parts = [hashCode(label[e.entry.type] ?? 'body', b['hash']), hashCode('receipt', b['receipt'])].filter((p) => p !== '');
  return parts.length === 0 ? html`-` : html`${parts.map((p, i) => html`${i > 0 ? html`<br />` : ''}${p}`)}`;
}

/** Reads the entries named by the index, oldest first (by time, then feed and seq). */
export async function loadEntries(ctx: ViewContext, refs: ReadonlyArray<{ feed: string; seq: number }>): Promise<StoredEntry[]> {
  const out: StoredEntry[] = [];
  for (const r of refs.slice(0, MAX_SUBJECT_ENTRIES)) {
    const e = await ctx.deps.ledger.get(r.feed, r.seq);
    if (e) out.push(e);
  }
  return out.sort((a, b) =>
    a.entry.ts !== b.entry.ts ? (a.entry.ts < b.entry.ts ? -1 : 1) : a.entry.feed.localeCompare(b.entry.feed) || a.entry.seq - b.entry.seq,
  );
}

/** The entries as a table, each with its feed/seq, SHA-256, previous entry's hash, body hashes and whether a signed checkpoint covers it. */
export async function entriesTable(ctx: ViewContext, entries: readonly StoredEntry[], caption: string): Promise<SafeHtml> {
  if (entries.length === 0) return html`<p>No ledger entry names it in the feeds this agent holds.</p>`;
  const rows: SafeHtml[] = [];
  for (const e of entries) {
    const cp = await ctx.deps.ledger.checkpointCovering(e.entry.feed, e.entry.seq);
    rows.push(
      html`<tr class="ledger-entry">
        <td><code>${e.entry.type}</code></td>
        <td><code>${e.entry.feed}/${e.entry.seq}</code></td>
        <td>${when(e.entry.ts)}</td>
        <td>${describe(e)}</td>
        <td><code title="${e.hash}">${short(e.hash)}</code></td>
        <td><code title="${e.entry.prev}">${short(e.entry.prev)}</code></td>
        <td>${bodyHashes(e)}</td>
        <td>${cp ? html`<span class="ok">in the checkpoint of size ${cp.size}</span>` : html`<span class="warn">not yet in a checkpoint</span>`}</td>
      </tr>`,
    );
  }
  return html`<table class="ledger-entries">
    <caption>
      ${caption}
    </caption>
    <thead>
      <tr>
        <th scope="col">Type</th>
        <th scope="col">Entry (feed/seq)</th>
        <th scope="col">Time</th>
        <th scope="col">What it records</th>
        <th scope="col">Entry SHA-256</th>
        <th scope="col">Previous entry</th>
        <th scope="col">Hashes it carries</th>
        <th scope="col">Checkpoint</th>
      </tr>
    </thead>
    <tbody>
      ${rows}
    </tbody>
  </table>`;
}
