/**
 * How a DICOM header's patient (Patient ID, Issuer of Patient ID) is named
 * in the agent's canonical form (`system|value`, see consent/patient.ts),
 * and whether it is the patient a request names.
 */
import type { PatientName } from '../consent/patient.ts';
import { AgentError } from '../errors.ts';
import type { DicomPatient } from './header.ts';

/** How the hospital's DICOM names its patients (from `patients.*` in the agent config). */
export interface DicomNaming {
  /** `patients.identifierSystem`: the system of the hospital's own patient ids. */
  identifierSystem?: string | undefined;
  /** `patients.dicomIssuer`: the Issuer of Patient ID (0010,0021) the hospital's modalities write for its own ids. */
  dicomIssuer?: string | undefined;
}

const OID = /^[0-2](\.(0|[1-9][0-9]*))+$/;
const URI = /^[A-Za-z][A-Za-z0-9+.-]*:\S+$/;

/**
 * The canonical patient of a DICOM header: with no issuer, or the
 * hospital's own (`dicomIssuer`), a value of `identifierSystem`; an OID
 * issuer as `urn:oid:<oid>`; a URI issuer as itself; any other issuer name as
 * a system of that name (a consent must then name `issuer|value`).
 */
export function dicomPatientName(p: DicomPatient, naming: DicomNaming): PatientName {
  const issuer = p.issuer?.trim();
  if (!issuer || issuer === naming.dicomIssuer) return { system: naming.identifierSystem, value: p.id };
  if (OID.test(issuer)) return { system: `urn:oid:${issuer}`, value: p.id };
  if (URI.test(issuer)) return { system: issuer, value: p.id };
  return { system: issuer, value: p.id };
}

/** True when the DICOM patient `found` is the `requested` one (same value; same system, unless either may be any). */
export function samePatient(found: PatientName, requested: PatientName): boolean {
  if (found.value !== requested.value) return false;
  if (found.system === undefined || requested.system === undefined) return true;
  return found.system === requested.system;
}

/** Throws ERR_DICOM_PATIENT_MISMATCH unless the header's patient is the requested one (the message names no value). */
export function checkDicomPatient(p: DicomPatient, requested: PatientName, naming: DicomNaming): void {
  if (!samePatient(dicomPatientName(p, naming), requested))
    throw new AgentError(
      'ERR_DICOM_PATIENT_MISMATCH',
      p.issuer
        ? "DICOM: Patient ID (0010,0020) with Issuer of Patient ID (0010,0021) names a patient other than the request's"
        : "DICOM: Patient ID (0010,0020) names a patient other than the request's",
    );
}
