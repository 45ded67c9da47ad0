import type { PatientName } from '../consent/patient.ts';
import { AgentError } from '../errors.ts';
import type { FhirIssue } from '../errors.ts';
import { bundlePatientIssues } from './patients.ts';
import { validateR4 } from './validate.ts';

/** Bundle types an exchange may carry (FHIR R4 Bundle.type). */
export const BUNDLE_TYPES = [
  'document',
  'message',
  'transaction',
  'transaction-response',
  'batch',
  'batch-response',
  'history',
  'searchset',
  'collection',
] as const;

/** Largest FHIR Bundle the agent parses in memory for validation (bigger payloads go as binary). */
export const DEFAULT_MAX_FHIR_BYTES = 32 * 1024 * 1024;

/** What validation learned about a Bundle (no clinical content). */
export interface BundleSummary {
  type: (typeof BUNDLE_TYPES)[number];
  entries: number;
  resourceTypes: string[];
  /** The Bundle as parsed (valid R4), for what the caller reads of it next. */
  bundle: Record<string, unknown>;
}

const RESOURCE_TYPE = /^[A-Z][A-Za-z]{1,63}$/;

function invalid(message: string): AgentError {
  return new AgentError('ERR_INVALID_FHIR', `FHIR Bundle: ${message}`);
}

/**
 * Checks that `bytes` is a FHIR R4 Bundle in JSON: first its shape
 * (`resourceType` Bundle, a known `type`, `entry[].resource` objects each
 * with a `resourceType`: else 400 ERR_INVALID_FHIR), then full R4 validation
 * ({@link validateR4}: 422 ERR_FHIR_INVALID / ERR_FHIR_REFERENCE_UNRESOLVED).
 * With `patient`, the Bundle must also be about that patient and no other
 * ({@link bundlePatientIssues}). Every problem of the last two kinds is one
 * issue of the 422 AgentError thrown (its code is the first issue's).
 * Error messages name fields and positions, never values.
 */
export function validateFhirBundle(bytes: Buffer, options: { patient?: PatientName } = {}): BundleSummary {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw invalid('body is not valid JSON');
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw invalid('body is not a JSON object');
  const bundle = value as Record<string, unknown>;
  if (bundle['resourceType'] !== 'Bundle') throw invalid("resourceType must be 'Bundle'");
  const type = bundle['type'];
  if (typeof type !== 'string' || !(BUNDLE_TYPES as readonly string[]).includes(type)) throw invalid(`type must be one of ${BUNDLE_TYPES.join(', ')}`);
  const entry = bundle['entry'] ?? [];
  if (!Array.isArray(entry)) throw invalid('entry must be an array');
  const types = new Set<string>();
  entry.forEach((e: unknown, i: number) => {
    if (!e || typeof e !== 'object' || Array.isArray(e)) throw invalid(`entry[${i}] is not an object`);
    const resource = (e as Record<string, unknown>)['resource'];
    if (resource === undefined) return;
    if (!resource || typeof resource !== 'object' || Array.isArray(resource)) throw invalid(`entry[${i}].resource is not an object`);
    const rt = (resource as Record<string, unknown>)['resourceType'];
    if (typeof rt !== 'string' || !RESOURCE_TYPE.test(rt)) throw invalid(`entry[${i}].resource.resourceType is missing or invalid`);
    types.add(rt);
  });
  if (type === 'document') {
    const first = (entry[0] as Record<string, unknown> | undefined)?.['resource'] as Record<string, unknown> | undefined;
    if (first?.['resourceType'] !== 'Composition') throw invalid('a document Bundle must start with a Composition');
  }
  // Full R4 validation, then the patient check; a reference the patient check reports is not reported twice.
  const patientIssues: FhirIssue[] = options.patient ? bundlePatientIssues(bundle, options.patient) : [];
  const located = new Set(patientIssues.map((i) => i.expression));
  const issues: FhirIssue[] = [
    ...validateR4(bundle).filter((i) => !(i.code === 'ERR_FHIR_REFERENCE_UNRESOLVED' && located.has(i.expression))),
    ...patientIssues,
  ];
  const first = issues[0];
  if (first) {
    const summary = issues.length === 1 ? first.message : `${issues.length} problems, the first: ${first.message}`;
    throw new AgentError(first.code, `FHIR Bundle: ${first.expression}: ${summary}`, { issues });
  }
  return { type: type as BundleSummary['type'], entries: entry.length, resourceTypes: [...types].sort(), bundle };
}
