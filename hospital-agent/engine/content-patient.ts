/**
 * The recipient's side of "the patient comes from the content": a received
 * FHIR Bundle or DICOM file must be about the patient the sender's signed,
 * encrypted metadata names (`meta.patient`, what the sender checked).
 * Content that is not answers with a failed receipt
 * ({@link CONTENT_PATIENT_MISMATCH}) and is not delivered. Envelopes without
 * `meta.patient` (senders before it existed) and other content types are
 * not checked.
 */
import { open, stat } from 'node:fs/promises';
import { parsePatientId, type PatientName } from '../consent/patient.ts';
import { DICOM_HEADER_BYTES, dicomPatientName, readDicomPatient, samePatient } from '../dicom/index.ts';
import { DEFAULT_MAX_FHIR_BYTES } from '../fhir/bundle.ts';
import { bundlePatientIssues } from '../fhir/patients.ts';
import { InboundRefusedError } from './inbound.ts';

/** The failed receipt's code for content about another patient than its signed metadata names. */
export const CONTENT_PATIENT_MISMATCH = 'ERR_CONTENT_PATIENT_MISMATCH';

const FHIR = 'application/fhir+json';
const DICOM = 'application/dicom';
const mediaType = (contentType: string): string => contentType.split(';')[0]?.trim().toLowerCase() ?? '';

/** True when the recipient checks content of this type against `meta.patient`. */
export function checksPatient(contentType: string): boolean {
  const t = mediaType(contentType);
  return t === FHIR || t === DICOM;
}

/**
 * True when `content` (the first bytes of it unless `complete`) is about
 * `claim`. A DICOM issuer that is an OID or a URI is a system; any other
 * issuer name is the sender's own naming, so only the Patient ID is compared.
 */
export function contentIsAbout(contentType: string, claim: string, content: Buffer, complete: boolean): boolean {
  const patient: PatientName = parsePatientId(claim);
  const t = mediaType(contentType);
  try {
    if (t === FHIR) {
      if (!complete) return false;
      const bundle = JSON.parse(content.toString('utf8')) as unknown;
      if (!bundle || typeof bundle !== 'object' || Array.isArray(bundle)) return false;
      return bundlePatientIssues(bundle as Record<string, unknown>, patient).length === 0;
    }
    if (t === DICOM) {
      const found = readDicomPatient(content, complete);
      const name = dicomPatientName(found, {});
      const local = found.issuer !== undefined && name.system === found.issuer.trim() && !/^[A-Za-z][A-Za-z0-9+.-]*:/.test(found.issuer.trim());
      return samePatient(local ? { system: undefined, value: name.value } : name, patient);
    }
  } catch {
    // Unreadable content cannot be about the patient it claims.
    return false;
  }
  return true;
}

/** Throws the refusal unless content of `contentType` is about `claim` (a no-op without a claim or for other types). */
export function checkContentPatient(x: { contentType: string; patient?: string | undefined; exchangeId: string }, content: Buffer, complete: boolean): void {
  if (x.patient === undefined || !checksPatient(x.contentType)) return;
  if (!contentIsAbout(x.contentType, x.patient, content, complete))
    throw new InboundRefusedError(CONTENT_PATIENT_MISMATCH, `exchange ${x.exchangeId}: the content is not about the patient its signed metadata names`);
}

/** {@link checkContentPatient} for content in a file (the quarantine): reads a FHIR Bundle whole, a DICOM header's first bytes. */
export async function checkQuarantinedPatient(x: { contentType: string; patient?: string | undefined; exchangeId: string }, path: string): Promise<void> {
  if (x.patient === undefined || !checksPatient(x.contentType)) return;
  const size = (await stat(path)).size;
  const want = mediaType(x.contentType) === FHIR ? Math.min(size, DEFAULT_MAX_FHIR_BYTES) : Math.min(size, DICOM_HEADER_BYTES);
  const file = await open(path, 'r');
  try {
    const buf = Buffer.alloc(want);
    const { bytesRead } = await file.read(buf, 0, want, 0);
    checkContentPatient(x, buf.subarray(0, bytesRead), bytesRead === size);
  } finally {
    await file.close();
  }
}
