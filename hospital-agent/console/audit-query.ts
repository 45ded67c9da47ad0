// One job: FHIR AuditEvent and Consent search (an IHE ITI-81 subset) over the ledger index, answered as searchset Bundles.
import { ENTRY_TYPES, toAuditEvent, type EntryType, type Ledger, type StoredEntry } from '../../ledger/index.ts';
import { consentToFhir, PATIENT_HMAC_SYSTEM } from '../consent/fhir.ts';
import type { Consent } from '../consent/model.ts';
import { AgentError } from '../errors.ts';
import { parseFhirDateTime } from '../fhir/datetime.ts';
import { decodeCursor, encodeCursor, type Cursor, type EntryFilter, type LedgerIndex } from './ledger-index.ts';

/** `_count` when the query gives none. */
export const DEFAULT_AUDIT_COUNT = 100;
/** Largest `_count`; more is answered page by page through `next` links. */
export const MAX_AUDIT_COUNT = 1000;

/** The keyed hash of a clear patient id (the agent's secret and identifier system). */
export type PatientHasher = (patientId: string) => string;

/** Query parameters as express (or URLSearchParams) gives them: a value, repeated values, or nothing. */
export type QueryParams = Record<string, string | string[] | undefined>;

/** A parsed AuditEvent search: the filter, the page size and position, and the parameters a link repeats (the patient only as its hash). */
export interface AuditQuery {
  filter: EntryFilter;
  count: number;
  cursor: Cursor | undefined;
  /** The query's parameters without `_cursor`, the clear patient id replaced by `patient.identifier=urn:hie:patient-hmac|<hash>`. */
  linkParams: Array<[string, string]>;
}

const bad = (message: string): AgentError => new AgentError('ERR_BAD_REQUEST', message);

const values = (q: QueryParams, name: string): string[] => {
  const v = q[name];
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
};

const one = (q: QueryParams, name: string): string | undefined => {
  const v = values(q, name);
  if (v.length > 1) throw bad(`${name} may be given once`);
  return v[0];
};

/** The value of a FHIR token (`system|code` or `code`), each of a comma-separated list. */
const tokens = (text: string): Array<{ system: string | undefined; code: string }> =>
  text.split(',').map((t) => {
    const bar = t.indexOf('|');
    return bar < 0 ? { system: undefined, code: t.trim() } : { system: t.slice(0, bar), code: t.slice(bar + 1).trim() };
  });

/** The AuditEvent.type code (DICOM) of each ledger entry type, as ledger/auditevent.ts maps them. */
function typeCodes(): Map<string, Set<EntryType>> {
  const out = new Map<string, Set<EntryType>>();
  for (const type of ENTRY_TYPES) {
    const sample = {
      entry: { feed: 'x', seq: 0, ts: '1970-01-01T00:00:00.000Z', type, body: {}, prev: '', refs: [], v: 1 },
      hash: '',
    } as unknown as StoredEntry;
    const code = (toAuditEvent(sample).type as { code: string }).code;
    const set = out.get(code) ?? new Set<EntryType>();
    set.add(type);
    out.set(code, set);
  }
  return out;
}
let codes: Map<string, Set<EntryType>> | undefined;

/** Applies one `date` parameter (`[prefix]dateTime`) to the period; a partial date stands for its whole span. */
function applyDate(filter: EntryFilter, raw: string): void {
  const m = /^(eq|ge|gt|le|lt)?(.+)$/.exec(raw);
  const prefix = (m?.[1] ?? 'eq') as 'eq' | 'ge' | 'gt' | 'le' | 'lt';
  const text = m?.[2] ?? '';
  const start = parseFhirDateTime(text, 'start');
  const end = parseFhirDateTime(text, 'end');
  if (!start || !end) throw bad('date must be [eq|ge|gt|le|lt] followed by a FHIR date or dateTime (e.g. ge2026-11-01)');
  // Every bound as half-open [from, to): the end of a span is its last millisecond, so `to` is one past it.
  const after = new Date(end.getTime() + 1).toISOString();
  const tighten = (from?: string, to?: string): void => {
    if (from !== undefined && (filter.from === undefined || from > filter.from)) filter.from = from;
    if (to !== undefined && (filter.to === undefined || to < filter.to)) filter.to = to;
  };
  if (prefix === 'eq') tighten(start.toISOString(), after);
  else if (prefix === 'ge') tighten(start.toISOString());
  else if (prefix === 'gt') tighten(after);
  else if (prefix === 'le') tighten(undefined, after);
  else tighten(undefined, start.toISOString());
}

/** The patient a query names: `patient` (a clear id, hashed here and never kept) or `patient.identifier=urn:hie:patient-hmac|<hash>`. */
export function patientOf(q: QueryParams, hash: PatientHasher): string | undefined {
  const clear = one(q, 'patient');
  const byHash = one(q, 'patient.identifier');
  if (clear !== undefined && byHash !== undefined) throw bad('give patient or patient.identifier, not both');
  if (clear !== undefined) {
    try {
      return hash(clear);
    } catch {
      throw bad('patient must be a patient id of 1-256 characters');
    }
  }
  if (byHash !== undefined) {
    const m = /^([^|]*)\|([0-9a-f]{64})$/.exec(byHash);
    if (!m || m[1] !== PATIENT_HMAC_SYSTEM) throw bad(`patient.identifier must be ${PATIENT_HMAC_SYSTEM}|<64 hex digits>`);
    return m[2];
  }
  return undefined;
}

const KNOWN = new Set(['date', 'patient', 'patient.identifier', 'entity', 'agent', 'outcome', 'type', 'subtype', '_count', '_cursor', '_format']);

/** Parses an AuditEvent search; anything it cannot honour is 400 ERR_BAD_REQUEST (naming the parameter, never its value). */
export function parseAuditQuery(q: QueryParams, hash: PatientHasher): AuditQuery {
  for (const name of Object.keys(q)) if (!KNOWN.has(name)) throw bad(`unsupported search parameter ${name}`);
  const filter: EntryFilter = {};
  for (const d of values(q, 'date')) applyDate(filter, d);
  const patient = patientOf(q, hash);
  if (patient !== undefined) filter.patient = patient;
  const entity = one(q, 'entity');
  if (entity !== undefined) {
    const t = tokens(entity);
    if (t.length !== 1 || !/^[A-Za-z0-9_./-]{1,80}$/.test(t[0]?.code ?? ''))
      throw bad('entity must be one exchange id, consent id, claim id, prescription id or feed/seq');
    filter.entity = t[0]?.code as string;
  }
  const agent = one(q, 'agent');
  if (agent !== undefined) {
    const t = tokens(agent);
    if (t.length !== 1 || !/^[a-z0-9-]{2,63}$/.test(t[0]?.code ?? '')) throw bad('agent must be one hospital id');
    filter.agent = t[0]?.code as string;
  }
  const outcome = one(q, 'outcome');
  if (outcome !== undefined) {
    const set = new Set(tokens(outcome).map((t) => t.code));
    for (const c of set) if (!['0', '4', '8', '12'].includes(c)) throw bad('outcome must be 0, 4, 8 or 12');
    if (!set.has('0') && set.size > 0) filter.failed = true;
    if (set.has('0') && set.size === 1) filter.failed = false;
  }
  let types: Set<EntryType> | undefined;
  const type = one(q, 'type');
  if (type !== undefined) {
    codes ??= typeCodes();
    types = new Set();
    for (const t of tokens(type)) for (const e of codes.get(t.code) ?? []) types.add(e);
  }
  const subtype = one(q, 'subtype');
  if (subtype !== undefined) {
    const wanted = new Set(tokens(subtype).map((t) => t.code));
    for (const w of wanted) if (!(ENTRY_TYPES as string[]).includes(w)) throw bad(`subtype must be ledger entry types (${ENTRY_TYPES.join(', ')})`);
    types = new Set([...(types ?? ENTRY_TYPES)].filter((e) => wanted.has(e)));
  }
  if (types) filter.types = types;
  const countText = one(q, '_count');
  const count = countText === undefined ? DEFAULT_AUDIT_COUNT : Number(countText);
  if (!Number.isInteger(count) || count < 1 || count > MAX_AUDIT_COUNT) throw bad(`_count must be a whole number from 1 to ${MAX_AUDIT_COUNT}`);
  const cursorText = one(q, '_cursor');
  const cursor = cursorText === undefined ? undefined : decodeCursor(cursorText);
  if (cursorText !== undefined && !cursor) throw bad('_cursor is not a cursor this agent wrote');
  const linkParams: Array<[string, string]> = [];
  for (const [name, v] of Object.entries(q)) {
    if (name === '_cursor' || name === 'patient' || name === 'patient.identifier' || v === undefined) continue;
    for (const x of Array.isArray(v) ? v : [v]) linkParams.push([name, x]);
  }
  if (patient !== undefined) linkParams.push(['patient.identifier', `${PATIENT_HMAC_SYSTEM}|${patient}`]);
  return { filter, count, cursor, linkParams };
}

/** A FHIR searchset Bundle. */
export interface SearchBundle {
  resourceType: 'Bundle';
  type: 'searchset';
  link: Array<{ relation: string; url: string }>;
  entry: Array<{ fullUrl: string; resource: Record<string, unknown>; search: { mode: 'match' } }>;
}

/** `base?params` with the params encoded. */
export function linkTo(base: string, params: Array<[string, string]>): string {
  const s = new URLSearchParams(params).toString();
  return s ? `${base}?${s}` : base;
}

/** The stored entries of a page, in order (read from the ledger: the index keeps no bodies). */
export async function storedOf(ledger: Ledger, rows: ReadonlyArray<{ feed: string; seq: number }>): Promise<StoredEntry[]> {
  const out: StoredEntry[] = [];
  for (const r of rows) {
    const s = await ledger.get(r.feed, r.seq);
    if (s) out.push(s);
  }
  return out;
}

/**
 * Runs an AuditEvent search: the matching entries newest first, as AuditEvents
 * (ledger/auditevent.ts, IHE BALP patterns), a `self` link and a `next` link
 * while more match. Links name the patient only by its keyed hash.
 */
export async function searchAuditEvents(index: LedgerIndex, ledger: Ledger, query: AuditQuery, base: string): Promise<SearchBundle> {
  await index.refresh();
  const page = index.searchEntries(query.filter, query.count, query.cursor);
  const stored = await storedOf(ledger, page.items);
  const self = query.cursor ? [...query.linkParams, ['_cursor', encodeCursor(query.cursor)] as [string, string]] : query.linkParams;
  const link = [{ relation: 'self', url: linkTo(`${base}/AuditEvent`, self) }];
  if (page.next) link.push({ relation: 'next', url: linkTo(`${base}/AuditEvent`, [...query.linkParams, ['_cursor', encodeCursor(page.next)]]) });
  return {
    resourceType: 'Bundle',
    type: 'searchset',
    link,
    entry: stored.map((s) => ({ fullUrl: `${base}/AuditEvent/${s.hash}`, resource: toAuditEvent(s), search: { mode: 'match' } })),
  };
}

/** Consents of one patient (a required `patient` or `patient.identifier`) as a searchset of FHIR Consents. */
export async function searchConsents(index: LedgerIndex, q: QueryParams, hash: PatientHasher, base: string): Promise<SearchBundle> {
  for (const name of Object.keys(q)) if (!['patient', 'patient.identifier', '_format'].includes(name)) throw bad(`unsupported search parameter ${name}`);
  const patient = patientOf(q, hash);
  if (patient === undefined) throw bad('patient (or patient.identifier) is required');
  await index.refresh();
  const rows = index.consentsOf(patient);
  return {
    resourceType: 'Bundle',
    type: 'searchset',
    link: [{ relation: 'self', url: linkTo(`${base}/Consent`, [['patient.identifier', `${PATIENT_HMAC_SYSTEM}|${patient}`]]) }],
    entry: rows.map((c) => {
      const consent = {
        id: c.id,
        patientHash: c.patient,
        grantees: c.grantees,
        purposes: c.purposes,
        scope: c.scope,
        validFrom: c.validFrom,
        validUntil: c.validUntil,
        grantedAt: c.grantedAt,
        revokedAt: c.revokedAt,
      } as Consent;
      return { fullUrl: `${base}/Consent/${c.id}`, resource: consentToFhir(consent, index.self), search: { mode: 'match' as const } };
    }),
  };
}
