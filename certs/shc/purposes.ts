import { HEALTH_CARD_TYPE } from './card.ts';
import { ShcError } from './errors.ts';

/**
 * One card per purpose: what a card for each purpose keeps of the hospital's
 * FHIR Bundle, so an employer sees sick-leave dates and never the diagnosis.
 * Everything not named here is left out; then the spec's minimisation
 * ("Health Cards are small") drops ids, meta (but meta.security), narrative
 * text and display strings, and references become `resource:N`.
 */

/** The purposes a hospital issues cards for. */
export const CARD_PURPOSES = ['sick-leave', 'diagnosis', 'vaccination', 'lab-result'] as const;
/** A card purpose. */
export type CardPurpose = (typeof CARD_PURPOSES)[number];

/** Code system of the statements this project's cards make that no terminology codes (e.g. "unfit for work"). */
export const CERTIFICATE_CODE_SYSTEM = 'urn:hie:certificate';
/** The `vc.type` this project adds per purpose after the health-card type. */
export const PURPOSE_TYPE_PREFIX = 'urn:hie:certificate:';

/** What each purpose shows, in words (the docs and the verifier page print it). */
export const PURPOSE_SHOWS: Record<CardPurpose, string> = {
  'sick-leave': 'the patient (name, birth date), the practitioner and the dates the patient is unfit for work; no diagnosis',
  diagnosis: 'the patient, the practitioner and the diagnosis (Condition code, onset, abatement)',
  vaccination: 'the patient and each vaccination (vaccine code, date, lot number, performer)',
  'lab-result': 'the patient and each result (Observation code, value, date)',
};

type Json = Record<string, unknown>;
const FIELDS: Record<string, readonly string[]> = {
  Patient: ['resourceType', 'name', 'birthDate'],
  Practitioner: ['resourceType', 'name'],
  Organization: ['resourceType', 'name'],
  Condition: ['resourceType', 'clinicalStatus', 'verificationStatus', 'code', 'subject', 'onsetDateTime', 'abatementDateTime', 'recordedDate', 'recorder'],
  Immunization: ['resourceType', 'status', 'vaccineCode', 'patient', 'occurrenceDateTime', 'performer', 'lotNumber'],
  Observation: [
    'resourceType',
    'status',
    'code',
    'subject',
    'effectiveDateTime',
    'effectivePeriod',
    'performer',
    'valueQuantity',
    'valueCodeableConcept',
    'valueString',
    'interpretation',
    'referenceRange',
  ],
};
const NAME_FIELDS = ['family', 'given'] as const;

/** Resource types each purpose keeps (Patient first: it is `resource:0`). */
const KEEPS: Record<CardPurpose, readonly string[]> = {
  'sick-leave': ['Patient', 'Practitioner'],
  diagnosis: ['Patient', 'Practitioner', 'Condition'],
  vaccination: ['Patient', 'Immunization', 'Organization'],
  'lab-result': ['Patient', 'Observation', 'Organization'],
};
const REQUIRES: Record<CardPurpose, string | undefined> = {
  'sick-leave': undefined,
  diagnosis: 'Condition',
  vaccination: 'Immunization',
  'lab-result': 'Observation',
};

/** A date or date-time as FHIR writes them. */
const FHIR_DATE = /^\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2}))?)?)?$/;

/** Input of {@link cardBundle}. */
export interface CardBundleInput {
  purpose: CardPurpose;
  /** The hospital's FHIR R4 Bundle: one Patient, and the resources the purpose needs. */
  bundle: unknown;
  /** For `sick-leave`: the dates the patient is unfit for work (FHIR dates). */
  period?: { start: string; end: string } | undefined;
}

const bad = (message: string): ShcError => new ShcError('ERR_SHC_BUNDLE_INVALID', message);
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The `vc.type` of a card for `purpose`. */
export function cardTypes(purpose: CardPurpose): string[] {
  const extra =
    purpose === 'vaccination' ? ['https://smarthealth.cards#immunization'] : purpose === 'lab-result' ? ['https://smarthealth.cards#laboratory'] : [];
  return [HEALTH_CARD_TYPE, ...extra, `${PURPOSE_TYPE_PREFIX}${purpose}`];
}

/** The minimised FHIR Bundle (type collection, `resource:N` fullUrls) a card for `input.purpose` carries. */
export function cardBundle(input: CardBundleInput): Json {
  if (!(CARD_PURPOSES as readonly string[]).includes(input.purpose))
    throw new ShcError('ERR_SHC_PURPOSE_UNKNOWN', `purpose must be one of ${CARD_PURPOSES.join(', ')}`);
  const source = input.bundle;
  if (!isObject(source) || source['resourceType'] !== 'Bundle' || !Array.isArray(source['entry'])) throw bad('the input must be a FHIR Bundle with entries');
  const entries = source['entry'] as unknown[];
  if (entries.length > 64) throw bad('the input Bundle may carry at most 64 entries');
  const keeps = KEEPS[input.purpose];
  const picked: Array<{ keys: string[]; resource: Json }> = [];
  for (const e of entries) {
    if (!isObject(e) || !isObject(e['resource']) || typeof e['resource']['resourceType'] !== 'string')
      throw bad('every Bundle entry must carry a resource with a resourceType');
    const r = e['resource'];
    const type = r['resourceType'] as string;
    if (!keeps.includes(type)) continue;
    const keys: string[] = [];
    if (typeof e['fullUrl'] === 'string') keys.push(e['fullUrl'], e['fullUrl'].split('/').slice(-2).join('/'));
    if (typeof r['id'] === 'string') keys.push(`${type}/${r['id']}`, `urn:uuid:${r['id']}`);
    picked.push({ keys, resource: r });
  }
  const patients = picked.filter((p) => p.resource['resourceType'] === 'Patient');
  if (patients.length !== 1) throw bad(`the Bundle must carry exactly one Patient (it carries ${patients.length})`);
  const required = REQUIRES[input.purpose];
  if (required && !picked.some((p) => p.resource['resourceType'] === required)) throw bad(`a ${input.purpose} card needs at least one ${required}`);
  if (input.purpose === 'sick-leave') {
    const p = input.period;
    if (!p || !FHIR_DATE.test(p.start) || !FHIR_DATE.test(p.end) || p.end < p.start)
      throw bad('a sick-leave card needs a period {start, end} of FHIR dates, end not before start');
  }
  const ordered = [...patients, ...picked.filter((p) => p.resource['resourceType'] !== 'Patient')];
  const urls = new Map<string, string>();
  ordered.forEach((p, i) => p.keys.forEach((k) => urls.set(k, `resource:${i}`)));
  const out: Json[] = ordered.map((p) => pick(p.resource, urls));
  if (input.purpose === 'sick-leave' && input.period) {
    const practitioner = ordered.findIndex((p) => p.resource['resourceType'] === 'Practitioner');
    out.push({
      resourceType: 'Observation',
      status: 'final',
      code: { coding: [{ system: CERTIFICATE_CODE_SYSTEM, code: 'unfit-for-work' }] },
      subject: { reference: 'resource:0' },
      effectivePeriod: { start: input.period.start, end: input.period.end },
      ...(practitioner >= 0 ? { performer: [{ reference: `resource:${practitioner}` }] } : {}),
    });
  }
  return { resourceType: 'Bundle', type: 'collection', entry: out.map((resource, i) => ({ fullUrl: `resource:${i}`, resource })) };
}

function pick(r: Json, urls: Map<string, string>): Json {
  const type = r['resourceType'] as string;
  const out: Json = {};
  for (const f of FIELDS[type] ?? ['resourceType'])
    if (r[f] !== undefined) out[f] = f === 'name' && type !== 'Organization' ? names(r[f]) : minimise(r[f], urls);
  const meta = r['meta'];
  if (isObject(meta) && Array.isArray(meta['security']) && meta['security'].length > 0) out['meta'] = { security: minimise(meta['security'], urls) };
  return out;
}

function names(v: unknown): unknown {
  if (!Array.isArray(v)) return undefined;
  return v.filter(isObject).map((n) => Object.fromEntries(NAME_FIELDS.filter((k) => n[k] !== undefined).map((k) => [k, n[k]])));
}

/** The spec's minimisation of a value: no id, text, display or extension-free narrative; references rewritten or dropped. */
function minimise(v: unknown, urls: Map<string, string>): unknown {
  if (Array.isArray(v)) return v.map((x) => minimise(x, urls)).filter((x) => x !== undefined);
  if (!isObject(v)) return v;
  const out: Json = {};
  for (const [k, x] of Object.entries(v)) {
    if (k === 'id' || k === 'text' || k === 'display' || k === 'meta') continue;
    if (k === 'reference') {
      const to = typeof x === 'string' ? (urls.get(x) ?? urls.get(x.split('/').slice(-2).join('/'))) : undefined;
      if (to) out[k] = to;
      continue;
    }
    const m = minimise(x, urls);
    if (m !== undefined && !(isObject(m) && Object.keys(m).length === 0)) out[k] = m;
  }
  return Object.keys(out).length === 0 ? undefined : out;
}
