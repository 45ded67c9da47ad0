/**
 * Which patient a FHIR Bundle is about, read from its content: every Patient
 * resource (in an entry, or contained in one) and the Patient each
 * resource's `subject` / `patient` reference points to, resolved inside the
 * Bundle. The request's patient must be the one and only patient there.
 */
import type { PatientName } from '../consent/patient.ts';

/** Codes of the refusals this check makes (all 422 in the agent's error registry). */
export type PatientIssueCode = 'ERR_FHIR_PATIENT_MISMATCH' | 'ERR_FHIR_PATIENT_MULTIPLE' | 'ERR_FHIR_PATIENT_UNRESOLVED' | 'ERR_FHIR_PATIENT_MISSING';

/** One problem, located by a FHIRPath expression; messages name fields and positions, never values. */
export interface PatientIssue {
  code: PatientIssueCode;
  expression: string;
  message: string;
}

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : v === undefined ? [] : [v]);
/** `[base/]Type/id[/_history/version]`: a RESTful reference (FHIR R4 3.2.0.2). */
const RESTFUL = /(?:^|\/)([A-Z][A-Za-z]{1,63})\/([A-Za-z0-9.-]{1,64})(?:\/_history\/[A-Za-z0-9.-]{1,64})?$/;

/** True when the FHIR Identifier `identifier` names `patient`. */
function names(identifier: unknown, patient: PatientName): boolean {
  if (!isObject(identifier) || typeof identifier['value'] !== 'string' || identifier['value'].trim() !== patient.value) return false;
  if (patient.system === undefined) return true;
  const system = typeof identifier['system'] === 'string' ? identifier['system'].trim() : '';
  return system === patient.system;
}

/** The keys (`system|value`) of a Patient's identifiers, to tell one patient from another. */
function keys(identifiers: unknown): string[] {
  return list(identifiers)
    .filter((i): i is Json => isObject(i) && typeof i['value'] === 'string')
    .map((i) => `${typeof i['system'] === 'string' ? i['system'].trim() : ''}|${(i['value'] as string).trim()}`);
}

interface FoundPatient {
  resource: Json;
  expression: string;
  /** In an entry of its own (not contained): what a `Patient/<id>` reference resolves to. */
  inEntry: boolean;
}

/**
 * The problems that make `bundle` (a structurally valid Bundle) not wholly
 * about `patient`; an empty list when it is: at least one Patient, every
 * Patient carrying an identifier that names `patient`, and every
 * subject/patient reference resolving to one of them (or to a resource that
 * is not a Patient).
 */
export function bundlePatientIssues(bundle: Json, patient: PatientName): PatientIssue[] {
  const entries = list(bundle['entry']);
  const issues: PatientIssue[] = [];
  const patients: FoundPatient[] = [];
  const byFullUrl = new Map<string, Json>();
  entries.forEach((e, i) => {
    if (!isObject(e) || !isObject(e['resource'])) return;
    const resource = e['resource'];
    const fullUrl = typeof e['fullUrl'] === 'string' ? e['fullUrl'] : undefined;
    if (fullUrl !== undefined) byFullUrl.set(fullUrl, resource);
    if (resource['resourceType'] === 'Patient') patients.push({ resource, expression: `Bundle.entry[${i}].resource`, inEntry: true });
    list(resource['contained']).forEach((c, j) => {
      if (isObject(c) && c['resourceType'] === 'Patient')
        patients.push({ resource: c, expression: `Bundle.entry[${i}].resource.contained[${j}]`, inEntry: false });
    });
  });

  // Every Patient must be the request's. When none is, the first and those sharing an identifier with it are the one
  // other patient (a mismatch), any further one is more than one patient; when one is, every other is more than one.
  const matching = patients.filter((p) => list(p.resource['identifier']).some((id) => names(id, patient)));
  const first = new Set<string>();
  for (const p of patients) {
    if (matching.includes(p)) continue;
    const k = keys(p.resource['identifier']);
    const sameAsFirst = matching.length === 0 && (first.size === 0 || k.some((key) => first.has(key)));
    if (sameAsFirst) for (const key of k) first.add(key);
    issues.push(
      sameAsFirst && !issues.some((x) => x.code === 'ERR_FHIR_PATIENT_MULTIPLE')
        ? {
            code: 'ERR_FHIR_PATIENT_MISMATCH',
            expression: `${p.expression}.identifier`,
            message: "this Patient has no identifier naming the request's patient",
          }
        : {
            code: 'ERR_FHIR_PATIENT_MULTIPLE',
            expression: `${p.expression}.identifier`,
            message: "a second patient: the Bundle is about more than one patient (this Patient has no identifier naming the request's patient)",
          },
    );
  }
  let named = matching.length > 0;

  entries.forEach((e, i) => {
    if (!isObject(e) || !isObject(e['resource'])) return;
    const resource = e['resource'];
    for (const field of ['subject', 'patient'] as const) {
      list(resource[field]).forEach((ref, k, all) => {
        const at = `Bundle.entry[${i}].resource.${field}${all.length > 1 || Array.isArray(resource[field]) ? `[${k}]` : ''}`;
        const issue = referenceIssue(ref, at, resource, { byFullUrl, patients, patient, others: matching.length > 0 });
        if (issue === 'names') named = true;
        else if (issue) issues.push(issue);
      });
    }
  });

  if (patients.length === 0 && !named && issues.length === 0) {
    issues.push({
      code: 'ERR_FHIR_PATIENT_MISSING',
      expression: 'Bundle.entry',
      message: 'the Bundle has no Patient resource: the patient is read from the content',
    });
  }
  return issues;
}

/** What is wrong with one subject/patient reference, if anything. */
function referenceIssue(
  ref: unknown,
  at: string,
  resource: Json,
  x: { byFullUrl: Map<string, Json>; patients: FoundPatient[]; patient: PatientName; others: boolean },
): PatientIssue | 'names' | undefined {
  if (!isObject(ref)) return undefined;
  const type = typeof ref['type'] === 'string' ? ref['type'] : undefined;
  const reference = typeof ref['reference'] === 'string' ? ref['reference'].trim() : undefined;
  if (reference === undefined) {
    // A logical reference by identifier: of a Patient unless it says it is something else.
    if (ref['identifier'] === undefined || (type !== undefined && type !== 'Patient')) return undefined;
    if (names(ref['identifier'], x.patient)) return 'names';
    return x.others
      ? {
          code: 'ERR_FHIR_PATIENT_MULTIPLE',
          expression: `${at}.identifier`,
          message: "a second patient: this reference names a patient other than the request's",
        }
      : { code: 'ERR_FHIR_PATIENT_MISMATCH', expression: `${at}.identifier`, message: "this reference names a patient other than the request's" };
  }
  const unresolved = (why: string): PatientIssue => ({ code: 'ERR_FHIR_PATIENT_UNRESOLVED', expression: `${at}.reference`, message: why });
  if (reference.startsWith('#')) {
    const id = reference.slice(1);
    const target = list(resource['contained']).find((c) => isObject(c) && c['id'] === id);
    return target === undefined ? unresolved('refers to a contained resource the resource does not contain') : undefined;
  }
  const target = x.byFullUrl.get(reference);
  if (target !== undefined) return undefined;
  if (/^urn:(uuid|oid):/i.test(reference)) return unresolved('refers to an entry (fullUrl) that is not in the Bundle');
  const m = RESTFUL.exec(reference);
  if (!m) return unresolved('is not a reference the agent can resolve inside the Bundle');
  if (m[1] !== 'Patient') return undefined;
  const found = x.patients.some((p) => p.inEntry && p.resource['id'] === m[2]);
  return found ? undefined : unresolved('refers to a Patient that is not in the Bundle');
}
